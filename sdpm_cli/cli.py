"""The `sdpm` command line: a thin Typer layer over the Python API.

Each command lives in `sdpm_cli/commands/<name>.py` and registers itself on `app`. This module owns
only what every command shares: the --debug switch and the mapping of errors to exit codes.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Optional, TypeVar

import typer
from rich.console import Console

from sdpm_cli import __version__
from sdpm_cli.errors import EXIT_RUNTIME, SdpmError

F = TypeVar("F", bound=Callable[..., object])

# Results go to stdout (pipelines parse them); progress, warnings and errors go to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="sdpm",
    help="Stroke lesion segmentation and volumetry on non-contrast head CT (SDPM diffusion model).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_state = {"debug": bool(os.environ.get("SDPM_DEBUG"))}


def debug_enabled() -> bool:
    return _state["debug"]


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", markup=True)


def info(message: str) -> None:
    err.print(message, markup=False)


def guarded(fn: F) -> F:
    """Turn any failure into one line on stderr and its documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except SdpmError as exc:
            if debug_enabled():
                raise
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("error: interrupted", markup=False)
            raise typer.Exit(130) from None
        except MemoryError:
            if debug_enabled():
                raise
            err.print("error: out of memory", markup=False)
            raise typer.Exit(EXIT_RUNTIME) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a clinical tool
            if debug_enabled():
                raise
            msg = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"error: unexpected {type(exc).__name__}: {msg} (rerun with --debug for details)", markup=False)
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"sdpm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    if debug:
        _state["debug"] = True


def _register_commands() -> None:
    from sdpm_cli.commands import (  # noqa: F401  (each module registers its command on import)
        compare,
        convert,
        evaluate,
        info,
        qc,
        segment,
        series,
        synth,
        train,
        volume,
    )


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sdpm")


if __name__ == "__main__":
    main()
