"""Score models on family C (real_insert.py: a real head with lesions blended in; TEST ONLY).

    python benchmarks/accuracy/familyC_score.py --data data/test_setC --model models/sdpm-default.pt \
        --model runs/candidate.pt --out runs/familyC.json

The background (the GE head) is a real patient with an unlabelled hypodensity of its own (~90 mL,
real_insert.py's docstring). `sdpm evaluate` counts any infarct found there as false; this script
gives both readings: every figure over the whole brain, and the same with the case's ignore mask
(OUT/ignoreTs, the finding dilated 5 mm; no inserted infarct lies in it, an extra-axial bleed may
cross it) taken out of prediction and truth alike. Read infarct figures both ways; hemorrhage Dice is
given over the whole brain (the finding is not blood). Per model, one segmentation per case (`--mode`,
default `out`; the model's own lesion filter), then per class: mean Dice over the cases holding that class, false-positive mL on the cases without it, the
mean false lesion mL per lesion-free case, and per kind (hematoma / subdural / epidural) the
hemorrhage Dice, so that the extra-axial blood shows on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sdpm_cli.evaluate.metrics import dice


def case_scores(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray, voxel_ml: float) -> dict:
    """Per class (1, 2): Dice, true and predicted mL, whole brain and outside `ignore`."""
    out = {}
    for c in (1, 2):
        p, t = pred == c, truth == c
        keep = ~ignore
        out[c] = {"dice": dice(p, t), "dice_ign": dice(p & keep, t & keep),
                  "true_ml": float(t.sum()) * voxel_ml, "pred_ml": float(p.sum()) * voxel_ml,
                  "pred_ml_ign": float((p & keep).sum()) * voxel_ml}
    return out


def summarise(rows: list[dict]) -> dict:
    """Mean Dice over cases with the class; FP mL on cases without; false lesion per free case."""
    res = {}
    for c, name in ((1, "infarct"), (2, "hemorrhage")):
        w = [r for r in rows if r["scores"][c]["true_ml"] > 0]
        wo = [r for r in rows if r["scores"][c]["true_ml"] == 0]
        res[name] = {
            "n": len(w),
            "dice": float(np.mean([r["scores"][c]["dice"] for r in w])) if w else None,
            "dice_ign": float(np.mean([r["scores"][c]["dice_ign"] for r in w])) if w else None,
            "fp_ml": float(np.mean([r["scores"][c]["pred_ml"] for r in wo])) if wo else None,
            "fp_ml_ign": float(np.mean([r["scores"][c]["pred_ml_ign"] for r in wo])) if wo else None,
        }
    free = [r for r in rows if r["free"]]
    res["free_fp_ml"] = float(np.mean([sum(r["scores"][c]["pred_ml"] for c in (1, 2)) for r in free])) if free else None
    res["free_fp_ml_ign"] = (float(np.mean([sum(r["scores"][c]["pred_ml_ign"] for c in (1, 2)) for r in free]))
                             if free else None)
    kinds: dict[str, list[float]] = {}
    for r in rows:
        for k in r["blood_kinds"]:
            kinds.setdefault(k, []).append(r["scores"][2]["dice"])
    res["hemorrhage_dice_by_kind"] = {k: {"n": len(v), "dice": float(np.mean(v))} for k, v in sorted(kinds.items())}
    return res


def montage(panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    """One panel per case: the slice holding most truth (or the middle one), 0-100 HU, truth in red
    (hemorrhage) / cyan (infarct), the model's mask dashed in yellow (hemorrhage) / lime (infarct)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 6
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, hu, truth, pred) in zip(axes.ravel(), panels):
        z = int(np.argmax((truth > 0).sum(axis=(1, 2)))) if truth.any() else hu.shape[0] // 2
        ax.imshow(np.clip(hu[z], 0, 100), cmap="gray", interpolation="nearest")
        for arr, style, colours in ((truth, "solid", ("cyan", "red")), (pred, "dashed", ("lime", "yellow"))):
            for c, colour in zip((1, 2), colours):
                if (arr[z] == c).any():
                    ax.contour(arr[z] == c, [0.5], colors=colour, linewidths=0.8, linestyles=style)
        ax.set_title(title, fontsize=7)
    fig.suptitle("family C (real GE head, lesions blended in): truth solid (red blood, cyan infarct), "
                 "model dashed (yellow, lime)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def score_model(model_path: str | None, data: Path, manifest: dict, device: str = "cpu",
                panels: list | None = None, mode: str = "out") -> dict:
    """Score one model; `mode` union runs all four modes at once and scores each (`by_mode`);
    `cases`/`summary` are those of `mode` itself."""
    from sdpm_cli.pipeline import load_model, segment_study

    lm = load_model(model_path, device)[0]
    rows: dict[str, list] = {}
    for e in manifest["cases"]:
        seg = segment_study(str(data / e["image"]), model=lm, mode=mode, seed=0)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data / e["label"])))
        ign_path = data / e.get("ignore", "")
        ignore = (sitk.GetArrayFromImage(sitk.ReadImage(str(ign_path))) > 0) if e.get("ignore") and ign_path.exists() \
            else np.zeros(truth.shape, bool)
        kinds = sorted({l["kind"] for l in e["lesions"] if l["class"] == 2 and l["volume_ml"] > 0})
        for m, img in seg.labels_by_mode.items():
            pred = sitk.GetArrayFromImage(img)
            if pred.shape != truth.shape:
                raise SystemExit(f"{e['id']}: mask shape {pred.shape} != truth {truth.shape}")
            s = case_scores(pred, truth, ignore, float(e["voxel_ml"]))
            rows.setdefault(m, []).append({"case": e["id"], "free": e["id"].startswith("free_"), "blood_kinds": kinds,
                                           "scores": s})
            if m != mode:
                continue
            if panels is not None:
                kinds_all = ", ".join(l["kind"] for l in e["lesions"]) or "lesion-free"
                d = " ".join(f"{n} {s[c]['dice']:.2f}" for c, n in ((1, "inf"), (2, "hem")) if s[c]["true_ml"] > 0)
                title = f"{e['id']}: {kinds_all}\nDice {d}" if e["lesions"] else f"{e['id']} (lesion-free)"
                panels.append((title, sitk.GetArrayFromImage(seg.study.image), truth, pred))  # the HU it segmented (a copy)
            print(f"  {e['id']}: " + "  ".join(
                f"{n} true {s[c]['true_ml']:.1f} found {s[c]['pred_ml']:.1f} ({s[c]['pred_ml_ign']:.1f} outside the finding) "
                f"Dice {s[c]['dice']:.2f}" for c, n in ((1, "inf"), (2, "hem"))), flush=True)
    return {"model": model_path or "default", "mode": mode, "cases": rows[mode], "summary": summarise(rows[mode]),
            "by_mode": {m: summarise(r) for m, r in rows.items()}}


def _line(name: str, s: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"{name}: infarct Dice {f(s['infarct']['dice'])} ({f(s['infarct']['dice_ign'])} outside the finding, "
            f"n={s['infarct']['n']}), hemorrhage Dice {f(s['hemorrhage']['dice'])} (n={s['hemorrhage']['n']}); "
            f"FP infarct {f(s['infarct']['fp_ml'])} mL ({f(s['infarct']['fp_ml_ign'])}), FP hemorrhage "
            f"{f(s['hemorrhage']['fp_ml'])} mL; per lesion-free {f(s['free_fp_ml'])} mL ({f(s['free_fp_ml_ign'])}); "
            + ", ".join(f"{k} {v['dice']:.3f} (n={v['n']})" for k, v in s["hemorrhage_dice_by_kind"].items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder written by real_insert.py")
    ap.add_argument("--model", action="append", default=None, help="checkpoint (repeat; default: the shipped model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", default="out", help="out | salient | infer | union (union scores all four modes)")
    ap.add_argument("--out", default=None, help="write the JSON here")
    ap.add_argument("--montage", default=None, help="a PNG of every case with the first model's masks")
    a = ap.parse_args(argv)
    data = Path(a.data)
    if not (data / "manifest.json").is_file():
        print(f"no family-C manifest in {data} (run real_insert.py first)", file=sys.stderr)
        return 3
    manifest = json.loads((data / "manifest.json").read_text())
    results = []
    for i, m in enumerate(a.model or [None]):
        print(m or "default")
        panels = [] if (a.montage and i == 0) else None
        r = score_model(m, data, manifest, a.device, panels, a.mode)
        if panels:
            montage(panels, Path(a.montage))
        for mode, summ in r["by_mode"].items():
            print(_line(f"{m or 'default'} {mode}", summ))
        results.append(r)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"data": str(data), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
