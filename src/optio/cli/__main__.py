"""`python -m optio.cli`: the `optio` command."""

from optio.cli.entry import run

run()
