"""The Typer app every command registers on, the root options (--version, --debug) and `guarded`, the
mapping of errors to one line and a documented exit code. Commands import this module and
`sdpm_cli.console`, never `sdpm_cli.cli` (which imports the commands: no import circle, tested).
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, TypeVar

import typer

from sdpm_cli import __version__
from sdpm_cli.console import debug_enabled, error, say, set_debug
from sdpm_cli.errors import EXIT_RUNTIME, SdpmError

F = TypeVar("F", bound=Callable[..., object])

app = typer.Typer(
    name="sdpm",
    help="Stroke lesion segmentation and volumetry on non-contrast head CT (SDPM diffusion model).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
            error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None
        except MemoryError:
            if debug_enabled():
                raise
            error("out of memory")
            raise typer.Exit(EXIT_RUNTIME) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a clinical tool
            if debug_enabled():
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error(f"unexpected {type(exc).__name__}: {msg} (rerun with --debug for details)")
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        say(f"sdpm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors and debug log lines on stderr."),
) -> None:
    set_debug(debug)
