"""`python -m barkserve.cli`: the same as the `barkserve` command."""

import sys

from barkserve.cli import main

sys.exit(main())
