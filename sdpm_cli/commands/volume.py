"""`sdpm volume MASK`: lesion volume in mL per label and per connected lesion, on the mask's own grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import out, warn
from sdpm_cli.errors import InputRejected, UsageError
from sdpm_cli.outputs.atomic import check_writable, write_text


def _read_mask(path: Path):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = lines[-1] if lines else "unknown format"
        raise InputRejected(f"cannot read {path.name} as an image ({why[:160]})") from None


def _table(report) -> None:
    from rich.table import Table

    t = Table(title=f"Volumes (voxel {report.voxel_ml * 1000:.4g} mm³; lesions are 26-connected)")
    for col in ("label", "class", "lesions", "volume mL"):
        t.add_column(col, justify="right" if col != "class" else "left")
    for v in report.labels:
        t.add_row(str(v.label), v.name, str(v.n_lesions), f"{v.volume_ml:.3f}")
    out.print(t)
    if not report.lesions:
        return
    located = any(les.location for les in report.lesions)
    t = Table(title="Lesions (patient LPS mm)")
    cols = ["class", "#", "volume mL", "centroid x, y, z mm", "slices", "bbox index x0-x1, y0-y1"]
    for col in cols:
        t.add_column(col, no_wrap=col == "class")
    if located:
        t.add_column("location", no_wrap=True, min_width=len("intraventricular"))
    for les in report.lesions:
        (x0, y0, _), (x1, y1, _) = les.bbox_index
        c = ", ".join(f"{v:.1f}" for v in les.centroid_mm)
        row = [les.name, str(les.id), f"{les.volume_ml:.3f}", c, f"{les.slices[0]}-{les.slices[1]}", f"{x0}-{x1}, {y0}-{y1}"]
        t.add_row(*row, *([les.location or ""] if located else []))
    out.print(t)


@app.command("volume", help="Lesion volume (mL) per label and per connected lesion of a label mask (NIfTI, NRRD, ...).")
@guarded
def volume_cmd(
    mask: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Label image (0 background, 1 infarct, 2 hemorrhage)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print one CSV row per label and per lesion."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the report to FILE (.json or .csv, atomic)."),
    min_voxels: int = typer.Option(1, "--min-voxels", min=1, help="Ignore lesions smaller than this many voxels."),
    image: Optional[Path] = typer.Option(None, "--image", exists=True, dir_okay=False, readable=True,
                                         help="The CT (HU, on the mask's grid): adds each lesion's location "
                                              "(intra-axial, intraventricular, extra-axial, subarachnoid)."),
    force: bool = opt.force(),
) -> None:
    from sdpm_cli.postprocess.lesions import measure_lesions, report_csv

    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    out_fmt = None
    if out_path is not None:
        out_fmt = out_path.suffix.lower().lstrip(".")
        if out_fmt not in ("json", "csv"):
            raise UsageError(f"--out must end in .json or .csv (got {out_path.name})")
        check_writable(out_path, force)

    label = _read_mask(mask)
    ct = _read_mask(image) if image is not None else None  # read before the work: a bad path fails fast
    report = measure_lesions(label, min_voxels=min_voxels)
    if ct is not None:
        from sdpm_cli.postprocess.lesions import add_locations

        add_locations(report, label, ct)
    for note in report.notes:
        warn(note)
    text = {"json": lambda: json.dumps(report.to_dict(), indent=2) + "\n", "csv": lambda: report_csv(report)}
    if out_path is not None:
        write_text(out_path, text[out_fmt](), force=force)
    if as_json or as_csv:
        typer.echo(text["json" if as_json else "csv"](), nl=False)
    else:
        _table(report)
