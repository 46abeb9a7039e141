"""The `sdpm` command line: a thin Typer layer over the Python API.

Each command lives in `sdpm_cli/commands/<name>.py` and registers itself on the shared app
(`sdpm_cli/commands/app.py`); console output goes through `sdpm_cli/console.py`. This module only
imports the commands and runs the app.
"""

from __future__ import annotations

from sdpm_cli.commands.app import app, guarded  # noqa: F401 - the public entry points
from sdpm_cli.console import err, error, info, one_line, out, say, warn  # noqa: F401


COMMANDS = ("compare", "convert", "evaluate", "export", "info", "qc", "segment", "series", "serve", "synth", "train", "volume")


def _register_commands() -> None:
    import importlib

    for name in COMMANDS:  # each module registers its command on `app` when imported
        importlib.import_module(f"sdpm_cli.commands.{name}")


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sdpm")


if __name__ == "__main__":
    main()
