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
from sdpm_cli.errors import EXIT_PARTIAL
from sdpm_cli.outputs.atomic import write_text


def run_isolated(key: str, name: str, progress: str, work: Callable[[], tuple[dict, str]]) -> dict:
    """Run one item under the engine's failure policy (`engine.isolated`): `work()` returns (its
    summary row, a console line); a failure becomes a failed row with its exit code and one-line
    reason, printed as "[k/n] name: error: ..."."""
    from sdpm_cli.engine import isolated

    t0 = time.perf_counter()
    result, failure = isolated(work)
    if failure is None:
        row, line = result
        info(f"{progress} {name}: {line}")
    else:
        row = {key: name, "status": "failed", "exit_code": failure[0], "error": failure[1]}
        info(f"{progress} {name}: error: {failure[1]}")
    row.setdefault("runtime_s", round(time.perf_counter() - t0, 2))
    return row


def finish(rows: list[dict], fields: list[str], path: Path, done: str) -> None:
    """Write the summary CSV of `rows` and end the batch (`finish_summary`)."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    wr.writeheader()
    wr.writerows(rows)
    finish_summary(buf.getvalue(), [r["status"] for r in rows], path, done)


def finish_summary(table: str, statuses: list[str], path: Path, done: str) -> None:
    """Write the summary CSV (atomically, replacing an earlier one), say how many items `done`, and
    exit 6 when any failed."""
    write_text(path, table, force=True)
    failed = sum(s == "failed" for s in statuses)
    info(f"{len(statuses) - failed}/{len(statuses)} {done}; summary: {path}")
    if failed:
        raise typer.Exit(EXIT_PARTIAL)
