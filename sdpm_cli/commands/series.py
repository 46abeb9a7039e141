"""`sdpm series STUDY`: every series in a study, the one sdpm would use, and why each other was left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import one_line, say, warn
from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest import Survey, survey_study
from sdpm_cli.ingest.discover import IGNORED_KINDS


def ignored_line(counts: dict[str, int]) -> str:
    if not counts:
        return "ignored: nothing"
    return "ignored: " + ", ".join(f"{n} {IGNORED_KINDS.get(k, k.replace('_', ' '))}" for k, n in sorted(counts.items()))


def format_table(s: Survey) -> str:
    """Plain-text table (no wrapping, so UIDs stay copyable for --series)."""
    head = ["", "number", "description", "kernel", "thick_mm", "slices", "plane", "tilt", "uid", "chosen / left out because"]
    rows = [head]
    for r in s.rows:
        i = r.info
        rows.append([
            "*" if r.chosen else "",
            "" if i.number is None else str(i.number),
            one_line(i.description) or "-",  # file text: one line per row, whatever the file holds
            one_line(i.kernel) or "-",
            "-" if i.thickness_mm is None else f"{i.thickness_mm:g}",
            str(i.n_slices),
            i.orientation,
            f"{i.tilt_deg:.1f}",
            i.uid,
            one_line(r.reason),
        ])
    widths = [max(len(row[k]) for row in rows) for k in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


@app.command("series", help="List every series in a study with the chosen one marked (*) and why each other was left out.")
@guarded
def series_cmd(
    study: Path = typer.Argument(..., help="Study folder (DICOM, walked recursively) or one DICOM file."),
    series: Optional[str] = opt.series(),
    as_json: bool = typer.Option(False, "--json", help="Print the survey as JSON."),
) -> None:
    s = survey_study(study, series_uid=series)
    if not s.rows:
        raise InputRejected(s.refusal or f"no series found in {study}")
    if as_json:
        typer.echo(json.dumps(s.to_dict(), indent=2, default=str))
    else:
        for line in format_table(s).splitlines():
            say(line)
        say(ignored_line(s.ignored))
    if s.refusal:
        warn(s.refusal)
        raise typer.Exit(InputRejected.exit_code)
