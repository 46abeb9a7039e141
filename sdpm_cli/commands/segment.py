"""`sdpm segment`: one study -> lesion mask (+ report, DICOM SEG, preview), or many studies in batch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.batch import finish_summary
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import err, info, say, warn
from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.atomic import check_distinct, check_folder_writable, check_writable, write_text


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
    orientation: str = opt.orientation(),
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
    dicom_sr: Optional[Path] = typer.Option(None, "--dicom-sr", help="DICOM SR (TID 1500) with the volumes, intervals and lesions; needs --dicom-seg."),
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
    from sdpm_cli.engine import Engine, StudyJob
    from sdpm_cli.pipeline import SegmentOptions

    opt.start_run(mode, threads)
    requested = {"report": report, "csv": csv_path, "dicom_seg": dicom_seg, "dicom_sr": dicom_sr, "preview": preview,
                 "probabilities": probabilities}
    options = SegmentOptions(mode=mode, preset=preset, seed=seed, precision=precision, steps=steps, samples=samples,
                             gating=not no_gating, skull_stripped=skull_stripped, brain_mask=brain_mask,
                             orientation=orientation,
                             lesion_filter={} if no_lesion_filter else None,
                             ingest=opt.ingest_options(series, correct_tilt, resample_gaps, refuse_lossy))
    options.check()
    is_batch = batch is not None or out_dir is not None or (studies and len(studies) > 1)
    if is_batch and brain_mask is not None:
        raise UsageError("--brain-mask belongs to one study: it is not available in batch mode")
    if is_batch:
        _run_batch(studies or [], batch, out_dir, model, device, options, requested, include_phi, force, resume, shard,
                   log_json, quiet)
        return
    if not studies:
        raise UsageError("give a study (DICOM folder or NIfTI file), or --batch PARENT with --out-dir")
    if out_path is None:
        raise UsageError("--out mask.nii.gz is required for a single study (or use --out-dir for batch)")
    job = StudyJob(name=studies[0].name, study=studies[0],
                   outputs={"mask": out_path, **{k: v for k, v in requested.items() if v is not None}})
    _check_job(job, force)
    engine = Engine(model, device=device, options=options)
    for msg in engine.warnings:
        warn(msg)
    outcome = _with_progress(lambda progress: engine.run_study(job, replace=force, include_phi=include_phi, progress=progress),
                             quiet)
    for msg in outcome.segmentation.warnings:
        warn(msg)
    _print_summary(outcome.segmentation, job.outputs)


def _check_job(job, force: bool) -> None:
    """Every refusal about paths and input kind, before the model is loaded or the study is read."""
    from sdpm_cli.ingest import is_volume_file
    from sdpm_cli.outputs.write import check_output_paths, needs_dicom

    check_output_paths(job.outputs, study=job.study)
    for p in job.outputs.values():
        check_writable(p, force)  # exists without --force, or its folder cannot take a file
    flag = needs_dicom(job.outputs)
    if flag and is_volume_file(job.study):
        raise UsageError(f"{flag} needs a DICOM input study (this one is a volume file)")


def _with_progress(run, quiet: bool):
    """`run(progress)` with a progress bar on an interactive stderr."""
    if quiet or not err.is_terminal:
        return run(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("segmenting"), BarColumn(), TextColumn("{task.completed}/{task.total} slices"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("seg", total=None)
        return run(lambda d, n: bar.update(task, completed=d, total=n))


def _print_summary(seg, outputs: dict) -> None:
    from sdpm_cli.outputs.preview import volume_text

    s = seg.study.series
    info(f"series: {getattr(s, 'description', '') or '?'} ({getattr(s, 'n_slices', '?')} slices)")
    for name, v in seg.volumes.items():
        say(f"{name}: {volume_text(v, digits=2, long=True)}")
    if getattr(seg, "interval_source", ""):
        info(f"intervals: calibrated on {seg.interval_source}")
    runtime = getattr(seg, "network_runtime", "torch")
    runtime = f" ({runtime})" if runtime not in ("torch", "") else ""
    info(f"mode {seg.mode}, preset {seg.preset}, device {seg.device}{runtime}, "
         f"{seg.timings.get('total_s', 0):.1f} s; wrote {', '.join(str(p) for p in outputs.values())}")


def _run_batch(studies, parent, out_dir, model, device, options, requested, include_phi, force, resume, shard, log_json,
               quiet):
    from sdpm_cli.engine import SUMMARY_FIELDS, Engine, discover, plan_jobs, shard_of, summary_csv

    if out_dir is None:
        raise UsageError("batch mode needs --out-dir DIR")
    jobs = plan_jobs(shard_of(discover(studies, parent), shard), out_dir,
                     {k: Path(v).name for k, v in requested.items() if v})
    tag = f".shard{shard.replace('/', 'of')}" if shard else ""
    summary_path = out_dir / f"summary{tag}.csv"
    # every refusal about paths comes before the model is loaded or any study is read
    if log_json is not None:
        from sdpm_cli.outputs.write import OPTION

        everything = {"--log-json": log_json, "the summary": summary_path,
                      **{f"{OPTION[k]} of {j.name}": p for j in jobs for k, p in j.outputs.items()}}
        check_distinct(everything)
        check_writable(log_json, force or resume)
    check_folder_writable(summary_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(model, device=device, options=options)  # the model, once for the whole batch
    for msg in engine.warnings:
        warn(msg)
    events: list[str] = []

    def on_outcome(k: int, n: int, o) -> None:
        info(f"[{k}/{n}] {o.name}: {o.line}")
        if log_json is not None:
            row = o.row()
            events.append(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      **{f: row.get(f) for f in SUMMARY_FIELDS if f in row}}))
            write_text(log_json, "\n".join(events) + "\n", force=True)

    outcomes = engine.run_many(jobs, replace=force, resume=resume, include_phi=include_phi, on_outcome=on_outcome)
    finish_summary(summary_csv(outcomes), [o.status for o in outcomes], summary_path, "studies succeeded")
