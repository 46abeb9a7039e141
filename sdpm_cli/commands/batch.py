"""What every batch command shares: one item's failure never stops the run, the summary CSV and the
batch exit code (6 when any item failed)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Callable

import typer

from sdpm_cli.console import info
from sdpm_cli.errors import EXIT_PARTIAL, EXIT_RUNTIME, SdpmError
from sdpm_cli.outputs.atomic import write_text


def run_isolated(key: str, name: str, progress: str, work: Callable[[], tuple[dict, str]]) -> dict:
    """Run one item: `work()` returns (its summary row, a console line). Any failure becomes a failed
    row with its exit code and one-line reason, printed as "[k/n] name: error: ..."."""
    t0 = time.perf_counter()
    try:
        row, line = work()
        info(f"{progress} {name}: {line}")
    except SdpmError as exc:
        row = {key: name, "status": "failed", "exit_code": exc.exit_code, "error": str(exc)}
        info(f"{progress} {name}: error: {exc}")
    except Exception as exc:  # noqa: BLE001 - isolate unexpected failures too
        row = {key: name, "status": "failed", "exit_code": EXIT_RUNTIME, "error": f"unexpected {type(exc).__name__}: {exc}"}
        info(f"{progress} {name}: error: {row['error']}")
    row.setdefault("runtime_s", round(time.perf_counter() - t0, 2))
    return row


def finish(rows: list[dict], fields: list[str], path: Path, done: str) -> None:
    """Write the summary CSV (atomically, replacing an earlier one), say how many items `done`, and
    exit 6 when any failed."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    wr.writeheader()
    wr.writerows(rows)
    write_text(path, buf.getvalue(), force=True)
    failed = sum(r["status"] == "failed" for r in rows)
    info(f"{len(rows) - failed}/{len(rows)} {done}; summary: {path}")
    if failed:
        raise typer.Exit(EXIT_PARTIAL)
