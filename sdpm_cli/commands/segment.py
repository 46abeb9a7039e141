"""`sdpm segment`: one study -> lesion mask (+ report, DICOM SEG, preview), or many studies in batch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.batch import finish, run_isolated
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import err, info, say, warn
from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.atomic import check_distinct, check_folder_writable, check_writable, temp_glob, write_text


@app.command("segment", help="Segment stroke lesions (1 infarct, 2 hemorrhage) in one or many head CT studies.")
@guarded
def segment_cmd(
    studies: Optional[List[Path]] = typer.Argument(None, help="DICOM folder(s) or NIfTI file(s)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Mask NIfTI (one study)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Batch: one sub-folder per study here."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="Batch: every study folder/NIfTI directly under this folder."),
    mode: str = opt.mode(),
    preset: str = opt.preset(),
    model: Optional[Path] = opt.model(),
    device: str = opt.device(),
    threads: int = opt.threads(),
    precision: str = opt.precision(),
    seed: int = opt.seed(),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the number of sampling steps."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Override the number of repeats (salient/infer)."),
    series: Optional[str] = opt.series(),
    correct_tilt: bool = opt.correct_tilt(),
    resample_gaps: bool = opt.resample_gaps(),
    refuse_lossy: bool = opt.refuse_lossy(),
    no_gating: bool = typer.Option(False, "--no-gating", help="Run salient/infer on every brain slice, not only where `out` sees a candidate (research)."),
    skull_stripped: bool = typer.Option(False, "--skull-stripped", help="The NIfTI is brain-extracted (also detected): its non-background tissue is the brain mask."),
    brain_mask: Optional[Path] = typer.Option(None, "--brain-mask", help="Binary brain mask NIfTI on the image's grid, used instead of the skull-based mask (one study)."),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report (volumes with 95% interval, lesions, QC)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Per-lesion CSV."),
    dicom_seg: Optional[Path] = typer.Option(None, "--dicom-seg", help="DICOM Segmentation object referencing the source series."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="QC montage PNG."),
    probabilities: Optional[Path] = typer.Option(None, "--probabilities", help="Per-voxel probability NIfTI (one component per class)."),
    include_phi: bool = typer.Option(False, "--include-phi", help="Allow patient identifiers in the report."),
    force: bool = opt.force(),
    resume: bool = typer.Option(False, "--continue", help="Batch: skip studies that already finished."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch: process shard i of n (i/n, 1-based), for array jobs."),
    log_json: Optional[Path] = typer.Option(None, "--log-json", help="Batch: JSON-lines event log."),
    no_lesion_filter: bool = opt.no_lesion_filter(),
    quiet: bool = opt.quiet(),
) -> None:
    opt.start_run(mode, threads)
    requested = {"report": report, "csv": csv_path, "dicom_seg": dicom_seg, "preview": preview, "probabilities": probabilities}
    run = dict(mode=mode, preset=preset, device=device, seed=seed, precision=precision, steps=steps, samples=samples,
               **opt.ingest_kwargs(series, correct_tilt, resample_gaps, refuse_lossy), gating=not no_gating, skull_stripped=skull_stripped, brain_mask=brain_mask,
               lesion_filter={} if no_lesion_filter else None)
    is_batch = batch is not None or out_dir is not None or (studies and len(studies) > 1)
    if is_batch and brain_mask is not None:
        raise UsageError("--brain-mask belongs to one study: it is not available in batch mode")
    if not is_batch:
        if not studies:
            raise UsageError("give a study (DICOM folder or NIfTI file), or --batch PARENT with --out-dir")
        if out_path is None:
            raise UsageError("--out mask.nii.gz is required for a single study (or use --out-dir for batch)")
        outputs = {"mask": out_path, **{k: v for k, v in requested.items() if v is not None}}
        _check_paths(outputs, study=studies[0])
        for p in outputs.values():
            check_writable(p, force)  # exists without --force, or its folder cannot take a file
        from sdpm_cli.ingest import is_volume_file

        if dicom_seg is not None and is_volume_file(studies[0]):
            raise UsageError("--dicom-seg needs a DICOM input study (this one is a volume file)")
        from sdpm_cli.pipeline import load_model

        lm, w = load_model(model, device)
        for msg in w:
            warn(msg)
        seg = _segment_one(studies[0], lm, run, quiet)
        _write_outputs(seg, outputs, include_phi, force)
        _print_summary(seg, outputs)
        return
    _run_batch(studies or [], batch, out_dir, model, run, requested, include_phi, force, resume, shard, log_json, quiet)


OPTION = {"mask": "--out", "report": "--report", "csv": "--csv", "dicom_seg": "--dicom-seg", "preview": "--preview",
          "probabilities": "--probabilities"}


def _check_paths(outputs: dict, study: Optional[Path] = None, where: str = "") -> None:
    """Usage error, before any work, when two outputs (or an output and the input) are one file."""
    named = {f"{OPTION.get(k, k)}{where}": p for k, p in outputs.items()}
    if study is not None and not Path(study).is_dir():
        named = {"the input study": study, **named}
    check_distinct(named)


def _segment_one(study: Path, lm, run: dict, quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sdpm_cli.pipeline import segment_study

    if quiet or not err.is_terminal:
        seg = segment_study(study, model=lm, **run)
    else:
        with Progress(TextColumn("segmenting"), BarColumn(), TextColumn("{task.completed}/{task.total} slices"),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("seg", total=None)
            seg = segment_study(study, model=lm, progress=lambda d, n: bar.update(task, completed=d, total=n), **run)
    for msg in seg.warnings:
        warn(msg)
    return seg


def _write_outputs(seg, outputs: dict, include_phi: bool, force: bool) -> None:
    """Every requested file or none: all are written to temporaries, then renamed together."""
    import contextlib

    import SimpleITK as sitk

    from sdpm_cli.outputs.atomic import atomic_path
    from sdpm_cli.outputs.report import report_from_segmentation, report_to_csv, segmentation_lesion_rows

    if outputs.get("dicom_seg"):
        if not all(getattr(s, "sop_instance_uid", "") for s in getattr(seg.study, "slices", None) or [None]):
            raise UsageError("--dicom-seg needs a DICOM input study (this one is a volume file)")
        if getattr(seg.study, "corrected", False):
            raise UsageError("--dicom-seg is not available for a tilt-corrected or gap-resampled series "
                             "(its grid is not the source grid); use the NIfTI mask")
    with contextlib.ExitStack() as stack:
        # the mask is entered first so that it is renamed into place last: a study folder holding a
        # mask is finished (batch --continue relies on this), one without it is not
        order = ["mask"] + [k for k in outputs if k != "mask"]
        tmp = {k: stack.enter_context(atomic_path(outputs[k], force)) for k in order}
        rows = None  # the lesion table with each lesion's location, made once for report, CSV and preview
        if {"report", "csv", "preview"} & set(tmp):
            rows = segmentation_lesion_rows(seg)
        if "report" in tmp or "csv" in tmp:
            rep = report_from_segmentation(seg, include_phi=include_phi, phi=_phi(seg.study) if include_phi else None,
                                           lesions=rows)
            if "report" in tmp:
                tmp["report"].write_text(json.dumps(rep, indent=2) + "\n")
            if "csv" in tmp:
                tmp["csv"].write_text(report_to_csv(rep))
        if "probabilities" in tmp:
            sitk.WriteImage(seg.probability_image(), str(tmp["probabilities"]), useCompression=True)
        if "preview" in tmp:
            from sdpm_cli.outputs.preview import domain_banner, write_preview

            write_preview(seg.study.image, seg.labels, tmp["preview"], volumes_ml=dict(seg.volumes), force=True,
                          lesions=rows, banner=domain_banner(getattr(seg.study, "domain", None)))
        if "dicom_seg" in tmp:
            from sdpm_cli import __version__
            from sdpm_cli.outputs.dicomseg import write_dicom_seg

            write_dicom_seg(seg.labels, [s.path for s in seg.study.slices], tmp["dicom_seg"], force=True,
                            algorithm_name=f"sdpm {seg.model.name}", algorithm_version=__version__)
        sitk.WriteImage(seg.labels, str(tmp["mask"]), useCompression=True)


PHI_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate",
            "StudyInstanceUID", "InstitutionName")


def _phi(study) -> dict:
    """Patient identifiers from the first source slice, only ever read when --include-phi is given."""
    slices = getattr(study, "slices", None)
    if not slices:
        return {}
    import pydicom

    ds = pydicom.dcmread(str(slices[0].path), stop_before_pixels=True, specific_tags=list(PHI_TAGS))
    return {t: str(ds.get(t, "")) for t in PHI_TAGS}


def _volume_text(v) -> str:
    from sdpm_cli.outputs.preview import volume_text

    return volume_text(v, digits=2, long=True)


def _print_summary(seg, outputs: dict) -> None:
    s = seg.study.series
    info(f"series: {getattr(s, 'description', '') or '?'} ({getattr(s, 'n_slices', '?')} slices)")
    for name, v in seg.volumes.items():
        say(f"{name}: {_volume_text(v)}")
    if getattr(seg, "interval_source", ""):
        info(f"intervals: calibrated on {seg.interval_source}")
    info(f"mode {seg.mode}, preset {seg.preset}, device {seg.device}, "
         f"{seg.timings.get('total_s', 0):.1f} s; wrote {', '.join(str(p) for p in outputs.values())}")


# ----------------------------------------------------------------------------------------- batch
def _discover(studies: list[Path], parent: Optional[Path]) -> list[Path]:
    from sdpm_cli.ingest import is_study_file

    found = list(studies)
    if parent is not None:
        if not parent.is_dir():
            raise UsageError(f"--batch: not a folder: {parent}")
        found += sorted(p for p in parent.iterdir()
                        if not p.name.startswith(".") and (p.is_dir() or is_study_file(p)))
    if not found:
        raise UsageError("no studies given")
    return found


def _shard(items: list[Path], shard: Optional[str]) -> list[Path]:
    if not shard:
        return items
    try:
        i, n = (int(v) for v in shard.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise UsageError(f"--shard must be i/n with 1 <= i <= n, got '{shard}'") from None
    return [p for k, p in enumerate(items) if k % n == i - 1]


def _study_name(p: Path) -> str:
    from sdpm_cli.ingest import study_name

    return study_name(p)


SUMMARY_FIELDS = ["study", "status", "exit_code", "error", "mask", "infarct_ml", "hemorrhage_ml", "runtime_s"]


def _study_outputs(sdir: Path, requested: dict) -> dict:
    """A batch study's outputs: its mask plus each requested file, by name, in its own folder."""
    return {"mask": sdir / "mask.nii.gz", **{key: sdir / Path(v).name for key, v in requested.items() if v}}


def _finished_volumes(outputs: dict) -> dict:
    """The volumes (mL) of a study finished in an earlier run, for its summary row after --continue:
    from its report when there is one, else measured on its mask with the project's voxel volume."""
    from sdpm_cli.labels import CLASSES

    report = outputs.get("report")
    if report is not None and report.exists():
        try:
            vols = json.loads(report.read_text())["volumes"]
            return {f"{name}_ml": round(float(vols[name]["volume_ml"]), 3) for name in CLASSES.values()}
        except (ValueError, KeyError, TypeError, OSError):
            pass  # an unreadable report: measure the mask instead
    import numpy as np
    import SimpleITK as sitk

    from sdpm_cli.postprocess.lesions import voxel_volume_ml

    try:
        mask = sitk.ReadImage(str(outputs["mask"]))
    except RuntimeError:
        return {}
    arr, voxel_ml = sitk.GetArrayViewFromImage(mask), voxel_volume_ml(mask)
    return {f"{name}_ml": round(int(np.count_nonzero(arr == label)) * voxel_ml, 3) for label, name in CLASSES.items()}


def _clear_unfinished(outputs: dict) -> None:
    """--continue on a study without its mask: remove the temporaries a killed run left for its outputs
    (its stale outputs themselves are then rewritten; nothing else in the folder is touched)."""
    for p in outputs.values():
        for tmp in p.parent.glob(temp_glob(p)):
            tmp.unlink(missing_ok=True)


def _run_batch(studies, parent, out_dir, model, run, requested, include_phi, force, resume, shard, log_json, quiet):
    from sdpm_cli.pipeline import load_model

    if out_dir is None:
        raise UsageError("batch mode needs --out-dir DIR")
    items = _shard(_discover(studies, parent), shard)
    names = [_study_name(p) for p in items]
    if len(set(names)) != len(names):
        raise UsageError("two studies share a name; give distinct folder names")
    tag = f".shard{shard.replace('/', 'of')}" if shard else ""
    summary_path = out_dir / f"summary{tag}.csv"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir is not a folder: {out_dir}")
    per_study = [_study_outputs(out_dir / name, requested) for name in names]
    # every refusal about paths comes before the model is loaded or any study is read
    if per_study:  # the same file names in every study folder
        _check_paths(per_study[0], where=" (in each study folder)")
    if log_json is not None:
        everything = {"--log-json": log_json, "the summary": summary_path,
                      **{f"{OPTION.get(k, k)} of {n}": p for n, o in zip(names, per_study) for k, p in o.items()}}
        check_distinct(everything)
        check_writable(log_json, force or resume)
    check_folder_writable(summary_path)
    for o in per_study:  # a study folder left read-only by an earlier run
        check_folder_writable(o["mask"])
    out_dir.mkdir(parents=True, exist_ok=True)
    lm, w = load_model(model, run["device"])  # once for the whole batch
    for msg in w:
        warn(msg)
    rows, events = [], []

    def log(event: dict) -> None:
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}
        events.append(json.dumps(event))
        if log_json is not None:
            write_text(log_json, "\n".join(events) + "\n", force=True)

    for k, (study, name, outputs) in enumerate(zip(items, names, per_study), 1):
        sdir = outputs["mask"].parent
        if resume and outputs["mask"].exists():  # the mask is written last: its presence means finished
            info(f"[{k}/{len(items)}] {name}: already done, skipped")
            rows.append({"study": name, "status": "skipped", "exit_code": 0, "error": "", "mask": str(outputs["mask"]),
                         **_finished_volumes(outputs)})
            log({k2: rows[-1].get(k2) for k2 in SUMMARY_FIELDS if k2 in rows[-1]})
            continue
        # with --continue, a study folder without its mask is unfinished: its partial outputs are replaced
        replace = force or resume

        def work(study=study, name=name, outputs=outputs, sdir=sdir, replace=replace) -> tuple[dict, str]:
            t0 = time.perf_counter()
            _check_paths(outputs, study=study)
            if resume:
                _clear_unfinished(outputs)
            for p in outputs.values():
                check_writable(p, replace)
            seg = _segment_one(study, lm, run, quiet=True)
            sdir.mkdir(parents=True, exist_ok=True)
            _write_outputs(seg, outputs, include_phi, replace)
            vols = {f"{n}_ml": round(v.volume_ml, 3) for n, v in seg.volumes.items()}
            row = {"study": name, "status": "ok", "exit_code": 0, "error": "", "mask": str(outputs["mask"]),
                   **vols, "runtime_s": round(time.perf_counter() - t0, 2)}
            return row, ", ".join(f"{n} {_volume_text(v)}" for n, v in seg.volumes.items())

        row = run_isolated("study", name, f"[{k}/{len(items)}]", work)
        rows.append(row)
        log({k2: row.get(k2) for k2 in SUMMARY_FIELDS})
    finish(rows, SUMMARY_FIELDS, summary_path, "studies succeeded")
