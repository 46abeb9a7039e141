"""`sdpm evaluate`: score predictions against reference labels (Dice, IoU, HD95, VC, VDP, ...).

Two forms:
  sdpm evaluate PRED_DIR TRUTH_DIR --out DIR              (existing nnU-Net-style label files)
  sdpm evaluate --data D [--model M] --modes out,union --out DIR   (segment first, then score)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info, out, warn
from sdpm_cli.errors import EXIT_PARTIAL, InputRejected, UsageError
from sdpm_cli.modes import DEFAULT_MODE


@app.command(
    "evaluate",
    help=(
        "Score segmentations against reference labels: per-case CSV, summary JSON, a Table-1-style "
        "Markdown table and volume plots. Give PRED_DIR TRUTH_DIR (label files matched by name), or "
        "--data (nnU-Net raw folder or image,label CSV) with --model and --modes to segment first."
    ),
)
@guarded
def evaluate_cmd(
    pred_dir: Optional[Path] = typer.Argument(None, help="Folder of predicted label maps (case_0001.nii.gz ...)."),
    truth_dir: Optional[Path] = typer.Argument(None, help="Folder of reference label maps with the same names."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for per_case.csv, summary.json, table1.md, plots."),
    name: Optional[str] = typer.Option(None, "--name", help="Method name for PRED_DIR in the tables (default: its folder name)."),
    data: Optional[Path] = typer.Option(None, "--data", help="nnU-Net raw folder (imagesTs/labelsTs) or CSV of image,label."),
    model: Optional[Path] = opt.model(),
    modes: str = typer.Option(DEFAULT_MODE, "--modes", help="Comma-separated modes for --data: out,salient,infer,union."),
    preset: str = opt.preset(),
    no_lesion_filter: bool = opt.no_lesion_filter(),
    seed: int = opt.seed(),
    device: str = opt.device(),
    split: str = typer.Option("test", "--split", help="With an nnU-Net folder: test (imagesTs) or train (imagesTr)."),
    force: bool = opt.force(),
) -> None:
    from sdpm_cli.evaluate.report import planned_outputs, table1_markdown, write_evaluation
    from sdpm_cli.evaluate.runner import evaluate_dataset, evaluate_folders, parse_modes
    from sdpm_cli.evaluate.scoring import summarize

    if data is not None and (pred_dir is not None or truth_dir is not None):
        raise UsageError("give either PRED_DIR TRUTH_DIR or --data, not both")
    if data is None and (pred_dir is None or truth_dir is None):
        raise UsageError("give PRED_DIR and TRUTH_DIR, or --data (with --model and --modes) to segment first")
    if data is None and model is not None:
        raise UsageError("--model needs --data (PRED_DIR TRUTH_DIR scores existing predictions)")
    planned_outputs(out_dir, force)  # refuse existing outputs before any work

    if data is not None:
        mode_list = parse_modes(modes)

        def progress(i: int, n: int, case: str) -> None:
            if case:
                info(f"[{i + 1}/{n}] segmenting {case}")

        run = evaluate_dataset(
            data, modes=mode_list, model=model, preset=preset, seed=seed, device=device, split=split, progress=progress,
            lesion_filter={} if no_lesion_filter else None,
        )
    else:
        run = evaluate_folders(pred_dir, truth_dir, name=name)

    for w in run.warnings:
        warn(w)
    if run.n_scored == 0:
        first = run.failures[0][2] if run.failures else "no cases"
        raise InputRejected(f"no case could be scored (first failure: {first})")
    summary = summarize(run.rows)
    paths = write_evaluation(out_dir, run.rows, summary, source=run.source, force=force)
    out.print(table1_markdown(summary), markup=False)
    info("wrote " + ", ".join(str(p) for p in paths.values()))
    if run.failures:
        for mode, case, reason in run.failures:
            warn(f"{case} ({mode}) not scored: {reason}")
        info(f"{len(run.failures)} case(s) not scored: see per_case.csv and summary.json")
        raise typer.Exit(EXIT_PARTIAL)
