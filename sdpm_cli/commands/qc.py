"""`sdpm qc STUDY`: the input gate alone, with a machine-readable verdict and its reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import say, warn
from sdpm_cli.errors import EXIT_INPUT, InputRejected, UsageError
from sdpm_cli.ingest import is_volume_file, load_study, series_files, survey_study


def qc_verdict(study: Path, series: Optional[str] = None, correct_tilt: bool = False, resample_gaps: bool = False,
               refuse_lossy: bool = False, cross_check: bool = False) -> dict:
    """Run the whole ingest; the verdict says pass/reject with reasons and what was measured.

    `cross_check`: read the chosen series a second time with dicom2nifti (ingest.crosscheck); any
    disagreement rejects the study, naming the quantity."""
    if cross_check and is_volume_file(study):
        raise UsageError(f"--cross-check compares two DICOM readers; {study} is a volume file")
    verdict: dict = {"verdict": "pass", "reasons": [], "modality": None, "series": None, "slice_thickness_mm": None,
                     "spacing_mm": None, "coverage_mm": None, "n_slices": None, "tilt_deg": None, "hu": None,
                     "corrected": [], "warnings": [], "ignored": {}, "cross_check": None, "orientation": None}
    try:
        st = load_study(study, options=opt.ingest_options(series, correct_tilt, resample_gaps, refuse_lossy))
    except InputRejected as exc:
        verdict["verdict"] = "reject"
        verdict["reasons"].append(str(exc))
        if cross_check:
            verdict["cross_check"] = _cross_check_refused(study, series)
        if not is_volume_file(study):
            try:  # describe what would have been used, from headers alone
                s = survey_study(study, series_uid=series)
                verdict["ignored"] = dict(s.ignored)
                row = s.chosen or next((r for r in s.rows if r.kind == "ct"), None)
                if row is not None:
                    _fill(verdict, row.info)
                    verdict["modality"] = "CT"
            except InputRejected:
                pass
        return verdict
    _fill(verdict, st.series)
    verdict["modality"] = "CT"
    verdict["spacing_mm"] = [round(float(x), 4) for x in st.image.GetSpacing()]
    verdict["hu"] = st.hu
    verdict["corrected"] = list(st.corrected)
    verdict["warnings"] = list(st.warnings)
    from sdpm_cli.preprocess.orientation import anatomy_may_judge, check_image

    if anatomy_may_judge(st):  # the anatomy's word on the header's orientation (segment acts on it)
        check = check_image(st.image)
        verdict["orientation"] = check.to_dict()
        if check.warning:
            verdict["warnings"].append(check.warning)
    verdict["reasons"].append(st.survey.chosen.reason if st.survey and st.survey.chosen else "NIfTI input taken as HU")
    if st.survey:
        verdict["ignored"] = dict(st.survey.ignored)
    if cross_check:
        verdict["cross_check"] = _cross_check_loaded(st)
        if verdict["cross_check"]["ok"] is False:
            verdict["verdict"] = "reject"
            verdict["reasons"] = [verdict["cross_check"]["line"]]
    return verdict


def _cross_check_loaded(st) -> dict:
    """The ingest accepted the series: dicom2nifti must read the same files to the same image."""
    from sdpm_cli.ingest.crosscheck import cross_check

    if st.corrected:
        return {"ok": None, "quantity": "", "line": f"cross-check: skipped: the series was resampled "
                f"({', '.join(st.corrected)}), so it is no longer the source grid dicom2nifti reads"}
    r = cross_check(st.image, [s.path for s in st.slices])
    return {"ok": r.ok, "quantity": r.quantity, "line": r.line}


def _cross_check_refused(study: Path, series: Optional[str]) -> dict:
    """The ingest refused: say whether dicom2nifti would have read the series (a disagreement too)."""
    from sdpm_cli.ingest.crosscheck import Dicom2niftiRefused, read_with_dicom2nifti

    try:
        label, files = series_files(study, series_uid=series)
    except InputRejected:
        return {"ok": None, "quantity": "", "line": "cross-check: no series to give dicom2nifti"}
    try:
        img = read_with_dicom2nifti(files)
    except Dicom2niftiRefused as exc:
        return {"ok": True, "quantity": "reader", "line": f"cross-check: dicom2nifti refuses {label} too: {exc}"}
    size = "x".join(str(n) for n in img.GetSize())
    return {"ok": False, "quantity": "reader",
            "line": f"cross-check: dicom2nifti reads {label} ({size} voxels) that the ingest refuses "
                    "(dicom2nifti checks no HU values or anatomy)"}


def _fill(verdict: dict, info) -> None:
    d = info.to_dict()
    verdict["series"] = {k: d[k] for k in ("uid", "number", "description", "kernel", "kernel_class", "orientation", "rows", "cols")}
    verdict["slice_thickness_mm"] = info.thickness_mm
    verdict["spacing_mm"] = d["spacing"]
    verdict["coverage_mm"] = d["coverage_mm"]
    verdict["n_slices"] = info.n_slices
    verdict["tilt_deg"] = d["tilt_deg"]


@app.command("qc", help="Check a study against the input gate (series, thickness, coverage, tilt, HU, modality). Exit 0 pass, 3 reject.")
@guarded
def qc_cmd(
    study: Path = typer.Argument(..., help="Study folder (DICOM), one DICOM file, or a NIfTI volume in HU."),
    series: Optional[str] = opt.series(),
    correct_tilt: bool = opt.correct_tilt(),
    resample_gaps: bool = opt.resample_gaps(),
    refuse_lossy: bool = opt.refuse_lossy(),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON (also on rejection)."),
    cross_check: bool = typer.Option(False, "--cross-check", help="Also read the chosen DICOM series with dicom2nifti and "
                                     "reject unless size, spacing, origin, direction and voxels agree."),
) -> None:
    v = qc_verdict(study, series, correct_tilt, resample_gaps, refuse_lossy, cross_check)
    if as_json:
        typer.echo(json.dumps(v, indent=2, default=str))
    else:
        s = v["series"] or {}
        say(f"verdict: {v['verdict']}")
        if s:
            say(f"series: {s.get('number')} {s.get('description')} ({s.get('uid')})")
            say(f"slices: {v['n_slices']}, thickness {v['slice_thickness_mm']} mm, spacing {v['spacing_mm']} mm, "
                f"coverage {v['coverage_mm']} mm, tilt {v['tilt_deg']} deg")
        if v["hu"]:
            say(f"HU: air {v['hu']['air_hu']}, soft-tissue peak {v['hu']['soft_tissue_peak_hu']}")
        for r in v["reasons"]:
            say(("reason: " if v["verdict"] == "reject" else "chosen: ") + r)
        if v["cross_check"] and not (v["verdict"] == "reject" and v["reasons"][0] == v["cross_check"]["line"]):
            say(v["cross_check"]["line"])
    for w in v["warnings"]:
        warn(w)
    if v["verdict"] != "pass":
        if not as_json:
            warn(v["reasons"][0])
        raise typer.Exit(EXIT_INPUT)
