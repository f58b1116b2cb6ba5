"""The offline evaluation harness (`barkserve eval`): test sets, configurations, runs and reports.

It calls the synthesizer and the quality scorers; nothing in the library calls it.
"""
