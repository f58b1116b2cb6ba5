"""Batched engine vs `BarkModel.generate`: `python benchmarks/bench_engine.py [--quick] [--model PATH]`."""

from __future__ import annotations

import sys

from barkserve.engine.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
