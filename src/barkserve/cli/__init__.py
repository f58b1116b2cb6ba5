"""The `barkserve` command. Flags and BARKSERVE_* variables reach every setting through one path."""

from __future__ import annotations

import click

from barkserve.cli.batch import batch
from barkserve.cli.book import book
from barkserve.cli.clone import clone, quantizer
from barkserve.cli.eval import evaluate
from barkserve.cli.finetune import finetune
from barkserve.cli.keys import keys
from barkserve.cli.serve import make_tiny, serve
from barkserve.cli.speak import jobs, say


@click.group()
@click.version_option(package_name="barkserve")
def main() -> None:
    """barkserve: a text-to-speech server and library for Suno's Bark."""


for command in (serve, say, book, jobs, batch, make_tiny, clone, quantizer, evaluate, keys, finetune):
    main.add_command(command)

__all__ = ["main"]
