"""Test tooling, not runtime API: random tiny checkpoints and token comparisons with the reference."""
