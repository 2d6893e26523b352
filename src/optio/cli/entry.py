"""The `optio` command's entry point (the console script and `python -m optio.cli`).

Loading the command allocates a few hundred thousand objects that live as long as the process (modules,
classes, for `serve` the whole app); the cyclic collector, left on, walks all of them again and again while
they are made, about a tenth of a server's start. It stays off until the command is loaded: `serve` turns it
back on once those objects are frozen out of its way, every other command before it runs.
"""

from __future__ import annotations

import gc


def run() -> None:
    gc.disable()
    from optio.cli.main import run as run_command

    run_command()
