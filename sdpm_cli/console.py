"""How text reaches the console, and the debug switch every part of the package reads.

Results go to stdout (pipelines parse them); progress, warnings and errors go to stderr, each as one
line made safe by `one_line`. The library (engine, serve) reports through these or through callbacks;
it never imports the CLI.
"""

from __future__ import annotations

import logging
import os
import sys
import unicodedata
from typing import Optional

from rich.console import Console
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


_state: dict = {"debug": bool(os.environ.get("SDPM_DEBUG"))}
log = logging.getLogger("sdpm_cli")


def debug_enabled() -> bool:
    return _state["debug"]


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def one_line(text: object) -> str:
    """`text` as one console line, whatever a file put in it (a SeriesDescription, a file name...).

    Control characters (newline, carriage return, tab, ESC, the Unicode line/paragraph separators,
    bidirectional overrides) are shown as visible escapes (`\\n`, `\\t`, `\\x1b`, `\\u2028`), so one
    message stays one line, cannot move the cursor or recolour the terminal, and the reader sees that
    the character was there. Files and JSON/CSV outputs keep the text verbatim; only the console
    shows it escaped. Rich markup needs no escaping here because every console line is printed as
    plain `Text` (see `say`), never parsed as markup or emoji codes.
    """
    s = str(text)
    out_chars = []
    for ch in s:
        if ch in _ESCAPES:
            out_chars.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI:
            out_chars.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out_chars.append(ch)
    return "".join(out_chars)


def say(message: object, *, console: Optional[Console] = None, prefix: str = "", style: str = "") -> None:
    """Print one line: `prefix` (styled) then `message` made safe by `one_line`, never read as markup."""
    line = Text()
    if prefix:
        line.append(prefix, style=style or None)
        line.append(" ")
    line.append(one_line(message))
    (console or out).print(line)


def warn(message: object) -> None:
    say(message, console=err, prefix="warning:", style="yellow")


def info(message: object) -> None:
    say(message, console=err)


def error(message: object) -> None:
    say(message, console=err, prefix="error:")


class _StderrHandler(logging.Handler):
    """Log records to whatever sys.stderr is now (the test runner swaps it per invocation)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


_log_handler = _StderrHandler()
_log_handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))


def configure_logging(debug: bool) -> None:
    """--debug: the package's `log.debug` lines (and ITK's messages) on stderr; otherwise none."""
    if debug:
        if _log_handler not in log.handlers:
            log.addHandler(_log_handler)
        log.setLevel(logging.DEBUG)
    else:
        if _log_handler in log.handlers:
            log.removeHandler(_log_handler)
        log.setLevel(logging.WARNING)
    route_itk_messages()


def route_itk_messages() -> None:
    """Send ITK/GDCM's own messages ("WARNING: In .../itkNiftiImageIO.cxx ...") to the `sdpm_cli.itk`
    logger at debug level instead of straight to stderr: a normal run shows only our one-line
    messages; --debug shows ITK's text among the debug lines. Needs SimpleITK >= 2.3 (LoggerBase)."""
    if _state.get("itk_logger") is not None:
        return
    try:
        import SimpleITK as sitk
    except ImportError:  # pragma: no cover
        return
    if not hasattr(sitk, "LoggerBase"):  # pragma: no cover - older SimpleITK: silence instead of route
        sitk.ProcessObject_SetGlobalWarningDisplay(False)
        return
    itk_log = logging.getLogger("sdpm_cli.itk")

    class _ITKToLogging(sitk.LoggerBase):
        def _emit(self, kind: str, text: str) -> None:
            text = " ".join(line.strip() for line in str(text).splitlines() if line.strip())
            if text:
                itk_log.debug("%s%s", kind, text)

        def DisplayText(self, t):  # noqa: N802 - ITK's method names
            self._emit("", t)

        def DisplayErrorText(self, t):  # noqa: N802
            self._emit("error: ", t)

        def DisplayWarningText(self, t):  # noqa: N802
            self._emit("", t)

        def DisplayGenericOutputText(self, t):  # noqa: N802
            self._emit("", t)

        def DisplayDebugText(self, t):  # noqa: N802
            self._emit("", t)

    bridge = _ITKToLogging()
    bridge.SetAsGlobalITKLogger()
    _state["itk_logger"] = bridge  # keep it alive: ITK holds only a pointer to it




def set_debug(debug: bool) -> None:
    """Set the debug switch for this invocation (one process may run several commands: tests, API use)."""
    _state["debug"] = bool(debug or os.environ.get("SDPM_DEBUG"))
    configure_logging(_state["debug"])
