"""`sdpm compare BASELINE FOLLOWUP`: hematoma expansion and infarct growth between two scans of one patient."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.batch import finish, run_isolated
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info, say, warn
from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.atomic import check_writable

DEFAULT_NAMES = {"json": "compare.json", "csv": "compare.csv", "preview": "compare.png"}


@app.command("compare", help="Volume change between a baseline and a follow-up scan of one patient "
                             "(hematoma expansion, infarct growth), after rigid registration.")
@guarded
def compare_cmd(
    baseline: Optional[Path] = typer.Argument(None, help="Baseline study (DICOM folder, zip or volume file)."),
    followup: Optional[Path] = typer.Argument(None, help="Follow-up study of the same patient."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="JSON document (schema sdpm-compare/1)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="CSV: one row per class, then per lesion."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="PNG: baseline and registered follow-up side by side."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for compare.json, compare.csv and compare.png "
                                                                   "(batch: one sub-folder per pair)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Batch: CSV with columns baseline,followup[,name] "
                                                               "(paths relative to the CSV)."),
    mode: str = opt.mode(),
    preset: str = opt.preset(),
    model: Optional[Path] = opt.model(),
    device: str = opt.device(),
    threads: int = opt.threads(),
    precision: str = opt.precision(),
    orientation: str = opt.orientation(),
    seed: int = opt.seed(),
    correct_tilt: bool = opt.correct_tilt(),
    resample_gaps: bool = opt.resample_gaps(),
    refuse_lossy: bool = opt.refuse_lossy(),
    no_lesion_filter: bool = opt.no_lesion_filter(),
    allow_different_patients: bool = typer.Option(False, "--allow-different-patients",
                                                  help="Compare even when the DICOM headers name different patients."),
    force: bool = opt.force(),
    quiet: bool = opt.quiet(),
) -> None:
    from sdpm_cli.compare import CompareOptions

    opt.start_run(mode, threads)
    options = CompareOptions(allow_different_patients=allow_different_patients)
    from sdpm_cli.pipeline import SegmentOptions

    run = SegmentOptions(mode=mode, preset=preset, seed=seed, precision=precision, orientation=orientation,
                         ingest=opt.ingest_options(None, correct_tilt, resample_gaps, refuse_lossy),
                         lesion_filter={} if no_lesion_filter else None)
    requested = {"json": json_path, "csv": csv_path, "preview": preview}
    if pairs is not None:
        if baseline is not None or followup is not None:
            raise UsageError("give either BASELINE FOLLOWUP or --pairs CSV, not both")
        _run_batch(pairs, out_dir, requested, model, device, run, options, force)
        return
    if baseline is None or followup is None:
        raise UsageError("give BASELINE and FOLLOWUP studies (or --pairs CSV with --out-dir)")
    outputs = {k: v for k, v in requested.items() if v is not None}
    if out_dir is not None:
        outputs = {k: outputs.get(k, out_dir / name) for k, name in DEFAULT_NAMES.items()}
    for p in outputs.values():
        check_writable(p, force)
    from sdpm_cli.pipeline import load_model

    lm, w = load_model(model, device)
    for msg in w:
        warn(msg)
    if not quiet:
        info("segmenting both scans and registering the follow-up to the baseline...")
    cmp, doc = _compare_one(baseline, followup, lm, run, options)
    for msg in doc["warnings"]:
        warn(msg)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    _write_outputs(cmp, doc, outputs, force)
    for line in _console_lines(doc):
        say(line)
    if outputs:
        info(f"mode {mode}, {doc['run']['timings'].get('total_s', 0):.1f} s; wrote {', '.join(str(p) for p in outputs.values())}")


def _compare_one(baseline: Path, followup: Path, lm, run, options):
    from sdpm_cli.compare import compare_studies
    from sdpm_cli.compare.report import report_from_comparison

    cmp = compare_studies(baseline, followup, model=lm, segment=run, options=options)
    return cmp, report_from_comparison(cmp)


def _console_lines(doc: dict) -> list[str]:
    from sdpm_cli.compare.report import console_lines

    return console_lines(doc)


def _write_outputs(cmp, doc: dict, outputs: dict, force: bool) -> None:
    """Every requested file or none: temporaries first, renamed together."""
    import contextlib

    from sdpm_cli.compare.preview import render_compare
    from sdpm_cli.compare.report import compare_to_csv
    from sdpm_cli.outputs.atomic import atomic_path

    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p, force)) for k, p in outputs.items()}
        if "json" in tmp:
            tmp["json"].write_text(json.dumps(doc, indent=2) + "\n")
        if "csv" in tmp:
            tmp["csv"].write_text(compare_to_csv(doc))
        if "preview" in tmp:
            import matplotlib.pyplot as plt

            fig = render_compare(cmp, doc)
            try:
                fig.savefig(tmp["preview"], format="png", dpi=110, facecolor=fig.get_facecolor())
            finally:
                plt.close(fig)


# ----------------------------------------------------------------------------------------- batch
SUMMARY_FIELDS = ["pair", "status", "exit_code", "error", "brain_dice", "infarct_baseline_ml", "infarct_followup_ml",
                  "infarct_change_ml", "infarct_growth", "hemorrhage_baseline_ml", "hemorrhage_followup_ml",
                  "hemorrhage_change_ml", "hemorrhage_change_pct", "hemorrhage_expansion", "runtime_s"]


def read_pairs(path: Path) -> list[tuple[str, Path, Path]]:
    """(name, baseline, followup) rows of a pairs CSV; relative paths are relative to the CSV's folder."""
    from sdpm_cli.ingest import study_name

    if not path.is_file():
        raise UsageError(f"--pairs: no such file: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if not {"baseline", "followup"} <= set(cols):
            raise UsageError(f"--pairs: {path.name} needs the columns baseline,followup[,name]")
        rows = []
        for k, r in enumerate(reader, 1):
            b, f = (r[cols[c]].strip() for c in ("baseline", "followup"))
            if not b or not f:
                raise UsageError(f"--pairs: row {k} lacks a baseline or a follow-up")
            bp, fp = ((Path(v) if Path(v).is_absolute() else path.parent / v) for v in (b, f))
            name = (r.get(cols["name"]) or "").strip() if "name" in cols else ""
            rows.append((name or f"{study_name(bp)}__{study_name(fp)}", bp, fp))
    if not rows:
        raise UsageError(f"--pairs: {path.name} lists no pairs")
    names = [n for n, _, _ in rows]
    if len(set(names)) != len(names):
        raise UsageError("--pairs: two pairs share a name; add a distinct name column")
    if any("/" in n or n.startswith(".") for n in names):
        raise UsageError("--pairs: a pair name may not contain '/' or start with '.'")
    return rows


def _summary_row(name: str, doc: dict, runtime: float) -> dict:
    inf, hem = doc["classes"]["infarct"], doc["classes"]["hemorrhage"]
    return {"pair": name, "status": "ok", "exit_code": 0, "error": "", "brain_dice": doc["registration"]["brain_dice"],
            "infarct_baseline_ml": round(inf["baseline_ml"], 3), "infarct_followup_ml": round(inf["followup_ml"], 3),
            "infarct_change_ml": round(inf["change_ml"], 3), "infarct_growth": inf["expansion_call"],
            "hemorrhage_baseline_ml": round(hem["baseline_ml"], 3), "hemorrhage_followup_ml": round(hem["followup_ml"], 3),
            "hemorrhage_change_ml": round(hem["change_ml"], 3), "hemorrhage_change_pct": hem["change_pct"],
            "hemorrhage_expansion": hem["expansion_call"], "runtime_s": round(runtime, 2)}


def _run_batch(pairs: Path, out_dir: Optional[Path], requested: dict, model, device: str, run, options, force: bool) -> None:
    from sdpm_cli.pipeline import load_model

    if out_dir is None:
        raise UsageError("--pairs needs --out-dir DIR")
    items = read_pairs(pairs)
    summary_path = out_dir / "summary.csv"
    check_writable(summary_path, force)
    lm, w = load_model(model, device)  # once for the whole batch
    for msg in w:
        warn(msg)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, b, f) in enumerate(items, 1):
        pdir = out_dir / name
        outputs = {"json": pdir / DEFAULT_NAMES["json"],
                   **{key: pdir / Path(v).name for key, v in requested.items() if v is not None}}

        def work(name=name, b=b, f=f, pdir=pdir, outputs=outputs) -> tuple[dict, str]:
            t0 = time.perf_counter()
            for p in outputs.values():
                check_writable(p, force)
            cmp, doc = _compare_one(b, f, lm, run, options)
            pdir.mkdir(parents=True, exist_ok=True)
            _write_outputs(cmp, doc, outputs, force)
            hem = doc["classes"]["hemorrhage"]
            return _summary_row(name, doc, time.perf_counter() - t0), (
                f"hemorrhage {hem['change_ml']:+.1f} mL (expansion {hem['expansion_call']}), "
                f"infarct {doc['classes']['infarct']['change_ml']:+.1f} mL")

        rows.append(run_isolated("pair", name, f"[{k}/{len(items)}]", work))
    finish(rows, SUMMARY_FIELDS, summary_path, "pairs compared")
