"""`sdpm convert STUDY --out image.nii.gz`: the chosen series as an int16 HU volume."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import say, warn
from sdpm_cli.errors import UsageError
from sdpm_cli.ingest import load_study
from sdpm_cli.outputs.atomic import check_writable, write_image

_FORMATS = (".nii", ".nii.gz", ".nrrd", ".mha")


def describe_series(study) -> str:
    """One line naming the series used (no patient identifiers) and why it was chosen."""
    i = study.series
    reason = study.survey.chosen.reason if study.survey and study.survey.chosen else ""
    uid = f" {i.uid}" if i.uid else ""
    return f"series{uid}: {i.label}" + (f" - {reason}" if reason else "")


@app.command("convert", help="Write the chosen series as a NIfTI volume in HU (int16), with the source geometry.")
@guarded
def convert_cmd(
    study: Path = typer.Argument(..., help="Study folder (DICOM), one DICOM file, or a NIfTI volume in HU."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output volume (.nii.gz, .nii, .nrrd or .mha)."),
    series: Optional[str] = opt.series(),
    correct_tilt: bool = opt.correct_tilt(),
    resample_gaps: bool = opt.resample_gaps(),
    refuse_lossy: bool = opt.refuse_lossy(),
    force: bool = opt.force(),
) -> None:
    if not str(out_path).lower().endswith(_FORMATS):
        raise UsageError(f"--out must end in one of {', '.join(_FORMATS)}: {out_path}")
    check_writable(out_path, force)
    st = load_study(study, options=opt.ingest_options(series, correct_tilt, resample_gaps, refuse_lossy))
    for w in st.warnings:
        warn(w)
    write_image(st.image, out_path, force)
    sx, sy, sz = st.image.GetSpacing()
    nx, ny, nz = st.image.GetSize()
    say(describe_series(st))
    say(f"wrote {out_path} ({nx}x{ny}x{nz} voxels, {sx:.3g}x{sy:.3g}x{sz:.3g} mm, int16 HU)")
