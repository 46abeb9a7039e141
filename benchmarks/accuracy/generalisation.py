"""One model, every data family: held-out family A, family B (never trained on), the real slices, the GE head.

    python benchmarks/accuracy/generalisation.py --model models/sdpm-default.pt --modes out,union \
        --set "A (sdpm synth, training generator, held-out seeds)=data/test_setA" \
        --set "B (atlas family, never trained on)=data/test_setB" --out runs/gen_default

For each --set (an nnU-Net folder with imagesTs/labelsTs; lesion-free studies named free_*, see
evalset.py) `sdpm evaluate --data` segments and scores every mode; the real CT-ICH slices are scored
by real_slices.py; the real GE head of ../shared/fixtures/dcm_qa_ct (no truth: it is reported as the
volumes found, with a QC preview). Writes OUT/results.json and OUT/results.md (one row per family and
mode: Dice per class over the cases with that class, volume correlation, mean false-positive mL on
lesion-free studies). Every row names its data family: a figure on the training generator alone is
not a result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
GE = REPO.parent / "shared" / "fixtures" / "dcm_qa_ct" / "GE"


def run_set(model: str | None, data: Path, modes: str, out: Path, lesion_filter: bool) -> dict:
    cmd = [sys.executable, "-m", "sdpm_cli", "evaluate", "--data", str(data), "--modes", modes, "--out", str(out),
           "--device", "cpu", "--force"]
    if model:
        cmd += ["--model", model]
    if not lesion_filter:
        cmd.append("--no-lesion-filter")
    rc = subprocess.run(cmd, capture_output=True, text=True)
    if rc.returncode not in (0, 6):
        raise SystemExit(f"sdpm evaluate failed on {data}: {rc.stderr.strip().splitlines()[-1:]}")
    return rows_from_evaluation(out)


def rows_from_evaluation(out: Path) -> dict:
    """One row per mode (or method) from an `sdpm evaluate` output folder (also a baseline's)."""
    from table import fp_on_lesion_free

    s = json.loads((out / "summary.json").read_text())
    fp = fp_on_lesion_free(out / "per_case.csv")
    rows = {}
    for mode, classes in s["modes"].items():
        rows[mode] = {
            **{f"{c}_dice": classes[c]["dice_mean_with_lesion"] for c in ("infarct", "hemorrhage")},
            **{f"{c}_vc": classes[c]["vc_pearson"] for c in ("infarct", "hemorrhage")},
            **{f"{c}_vdp": classes[c]["vdp_percent"] / 100 for c in ("infarct", "hemorrhage")},
            **{f"{c}_n": classes[c]["n_with_lesion"] for c in ("infarct", "hemorrhage")},
            **{f"{c}_fp_ml_without_class": classes[c]["fp_volume_ml_mean_lesion_free"] for c in ("infarct", "hemorrhage")},
            "fp_ml_lesion_free": fp.get(mode),
            "n_cases": s["n_cases"],
        }
    return rows


def run_ge(model, modes: list[str], out: Path, lesion_filter: bool) -> dict:
    from sdpm_cli.outputs.preview import write_preview
    from sdpm_cli.pipeline import load_model, segment_study

    if not GE.is_dir():
        return {}
    lm = load_model(model, "cpu")[0]
    mode = "union" if len(modes) > 1 else modes[0]
    seg = segment_study(GE, model=lm, mode=mode, correct_tilt=True, resample_gaps=True,
                        lesion_filter=None if lesion_filter else {})
    import numpy as np
    import SimpleITK as sitk

    res = {}
    for m in modes:
        lab = sitk.GetArrayViewFromImage(seg.labels_by_mode[m])
        vml = float(np.prod(seg.labels_by_mode[m].GetSpacing())) / 1000.0
        res[m] = {"infarct_ml": float((lab == 1).sum() * vml), "hemorrhage_ml": float((lab == 2).sum() * vml)}
    try:
        write_preview(seg.study.image, seg.labels_by_mode[modes[0]], out / "ge_head_preview.png", force=True)
        res["preview"] = str(out / "ge_head_preview.png")
    except Exception as exc:  # noqa: BLE001 - the preview is a convenience
        res["preview_error"] = f"{type(exc).__name__}: {exc}"
    return res


def markdown(res: dict) -> str:
    lines = ["| data family | mode | infarct Dice (n) | hemorrhage Dice (n) | infarct VC | hemorrhage VC | FP mL / lesion-free study |",
             "|---|---|---|---|---|---|---|"]
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for name, rows in res["sets"].items():
        for mode, r in rows.items():
            fp = r["fp_ml_lesion_free"]
            lines.append(f"| {name} | {mode} | {f(r['infarct_dice'])} ({r['infarct_n']}) | {f(r['hemorrhage_dice'])} "
                         f"({r['hemorrhage_n']}) | {f(r['infarct_vc'])} | {f(r['hemorrhage_vc'])} | "
                         f"{'–' if fp is None else f'{fp:.2f}'} |")
    real = res.get("real")
    if real:
        for mode, v in real["mean_dice"].items():
            lines.append(f"| 12 real CT-ICH slices (validation; mean / pooled Dice) | {mode} | – | "
                         f"{v:.3f} / {real['pooled_dice'][mode]:.3f} | – | – | – |")
    ge = res.get("ge")
    if ge:
        for mode, v in ge.items():
            if isinstance(v, dict):
                lines.append(f"| real GE head (no truth; found volumes) | {mode} | {v['infarct_ml']:.1f} mL | "
                             f"{v['hemorrhage_ml']:.1f} mL | – | – | – |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--modes", default="out,union")
    ap.add_argument("--set", action="append", default=[], help="NAME=FOLDER (repeatable)")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-ge", action="store_true")
    ap.add_argument("--no-lesion-filter", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = a.modes.split(",")
    res: dict = {"model": a.model or "default", "modes": modes, "lesion_filter": not a.no_lesion_filter, "sets": {}}
    for i, spec in enumerate(a.set):
        name, _, folder = spec.rpartition("=")
        res["sets"][name or folder] = run_set(a.model, Path(folder), a.modes, out / f"set{i}", not a.no_lesion_filter)
        print(f"{name}: done", flush=True)
    if not a.no_real:
        from real_slices import FIXTURES, score

        if Path(FIXTURES).is_dir():
            res["real"] = score(a.model, modes, lesion_filter=None if not a.no_lesion_filter else {})
    if not a.no_ge:
        res["ge"] = run_ge(a.model, modes, out, not a.no_lesion_filter)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
