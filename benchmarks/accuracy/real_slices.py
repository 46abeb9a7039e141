"""Score a model on the real NCCT slices of ../shared/fixtures/real_ich_slices (VALIDATION only).

    python benchmarks/accuracy/real_slices.py --model models/sdpm-default.pt --modes out,union --out runs/real.json

The fixtures are single axial slices (CT-ICH, CC BY 4.0) with manual hemorrhage masks. `sdpm segment`
needs a volume, so each slice is repeated into a 20-slice column of 5 mm (as the fixture README
suggests) and the whole pipeline runs on it (ingest checks skipped: the column is built in memory;
brain mask, model grid, sampler, lesion filter as in `segment`); the middle slice is scored.
Hemorrhage = label 2 of the prediction; any predicted infarct on these slices is reported as a
false-positive area. A 50-90 HU threshold inside the brain mask is scored the same way as a
reference. These cases choose models and filters; they are never trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.evaluate.metrics import dice  # the one Dice
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "real_ich_slices"
N_REPEAT = 20


def column(slice_img: sitk.Image, n: int = N_REPEAT) -> sitk.Image:
    """The slice repeated n times along z at its own slice spacing (same in-plane geometry)."""
    arr = sitk.GetArrayFromImage(slice_img)
    col = sitk.GetImageFromArray(np.repeat(arr[:1], n, axis=0).astype(np.int16))
    col.SetSpacing(slice_img.GetSpacing())
    col.SetOrigin(slice_img.GetOrigin())
    col.SetDirection(slice_img.GetDirection())
    return col


class _ColumnStudy:
    """Just enough of an ingest `Study` for `segment_study` (image, series uid, warnings)."""

    def __init__(self, image: sitk.Image, uid: str):
        self.image = image
        self.warnings: list[str] = []

        class _S:
            pass

        self.series = _S()
        self.series.uid = uid


def cases(folder: Path = FIXTURES) -> list[tuple[str, Path, Path]]:
    return [(p.name[: -len("_ct.nii.gz")], p, p.with_name(p.name.replace("_ct.", "_mask.")))
            for p in sorted(folder.glob("*_ct.nii.gz"))]


def threshold_baseline(col: sitk.Image, lo: float = 50.0, hi: float = 90.0) -> np.ndarray:
    from sdpm_cli.preprocess.brainmask import brain_mask_array

    arr = sitk.GetArrayViewFromImage(col)
    brain = brain_mask_array(arr, col.GetSpacing())
    mid = N_REPEAT // 2
    return (brain[mid] > 0) & (arr[mid] >= lo) & (arr[mid] <= hi)


def read_slice(path: Path, quarter_turns: int = 0) -> sitk.Image:
    """A fixture slice, optionally turned by quarter_turns x 90 degrees in its plane (same spacing and
    origin). The fixtures lie with the head's antero-posterior axis along the image rows (their
    orientation was lost when CT-ICH was converted); 1 quarter turn stands the heads upright, the
    orientation of a correctly labelled DICOM series and of the training phantoms."""
    from sdpm_cli.preprocess.orientation import quarter_turned

    img = sitk.ReadImage(str(path))
    return img if quarter_turns % 4 == 0 else quarter_turned(img, quarter_turns)


def stored_as(img: sitk.Image, code: Optional[str]) -> sitk.Image:
    """The same image stored in another in-plane order (SimpleITK orientation code, e.g. "RAS": a
    NIfTI written bottom-up); its geometry says so, as a correctly written file would."""
    return img if not code else sitk.DICOMOrient(img, code)


def score(model, modes: list[str], folder: Path = FIXTURES, seed: int = 0, lesion_filter=None, device: str = "cpu",
          quarter_turns: int = 0, store_as: Optional[str] = None, orientation: str = "anatomy") -> dict:
    """Per-slice Dice for every mode (+ the threshold), pooled Dice and means."""
    from sdpm_cli.pipeline import load_model, segment_study

    lm = model if hasattr(model, "net") else load_model(model, device)[0]
    run_mode = "union" if len(modes) > 1 or modes == ["union"] else modes[0]
    rows, pooled = [], {m: [0, 0] for m in modes + ["threshold"]}
    mid = N_REPEAT // 2
    for name, ct, mask in cases(folder):
        col = stored_as(column(read_slice(ct, quarter_turns)), store_as)
        truth = sitk.GetArrayFromImage(stored_as(column(read_slice(mask, quarter_turns), 1), store_as))[0] > 0
        seg = segment_study(_ColumnStudy(col, name), model=lm, mode=run_mode, seed=seed, lesion_filter=lesion_filter,
                            orientation=orientation)
        row = {"case": name, "truth_px": int(truth.sum()), "quarter_turns_applied": seg.orientation.get("quarter_turns", 0)}
        # volumes of the whole 20-slice column (what an interval is about): truth, point, band, interval
        voxel_ml = float(np.prod(col.GetSpacing())) / 1000.0
        row["vol_truth_ml"] = int(truth.sum()) * N_REPEAT * voxel_ml
        for m in modes:
            v = seg.volumes_by_mode[m]["hemorrhage"]
            row[f"vol_{m}"], row[f"band_{m}"] = v.volume_ml, v.band_ml
            row[f"ci_{m}"] = list(v.ci95_ml) if v.ci95_ml is not None else None
        preds = {m: sitk.GetArrayViewFromImage(seg.labels_by_mode[m])[mid] for m in modes}
        for m, lab in preds.items():
            row[f"dice_{m}"] = dice(lab == 2, truth)
            row[f"infarct_px_{m}"] = int((lab == 1).sum())
            pooled[m][0] += int(((lab == 2) & truth).sum())
            pooled[m][1] += int((lab == 2).sum() + truth.sum())
        thr = threshold_baseline(col)
        row["dice_threshold"] = dice(thr, truth)
        pooled["threshold"][0] += int((thr & truth).sum())
        pooled["threshold"][1] += int(thr.sum() + truth.sum())
        rows.append(row)
    out = {"n_slices": len(rows), "cases": rows, "mean_dice": {}, "pooled_dice": {}, "mean_infarct_px": {}}
    for m in modes + ["threshold"]:
        out["mean_dice"][m] = float(np.mean([r[f"dice_{m}"] for r in rows])) if rows else None
        out["pooled_dice"][m] = 2.0 * pooled[m][0] / pooled[m][1] if pooled[m][1] else None
        if m != "threshold":
            out["mean_infarct_px"][m] = float(np.mean([r[f"infarct_px_{m}"] for r in rows])) if rows else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--modes", default="out", help="comma-separated modes (union runs all four)")
    ap.add_argument("--fixtures", default=str(FIXTURES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-lesion-filter", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the model runs (cpu | cuda | auto)")
    ap.add_argument("--quarter-turns", type=int, default=0,
                    help="turn every slice (and its mask) by this many x 90 degrees first (1: heads upright)")
    ap.add_argument("--store-as", default=None, metavar="CODE",
                    help="store every column in this in-plane order first (SimpleITK orientation code, e.g. RAS)")
    ap.add_argument("--orientation", default="anatomy", choices=("anatomy", "header"),
                    help="segment's --orientation (header: the network sees the slices as stored)")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args(argv)
    folder = Path(a.fixtures)
    if not folder.is_dir():
        print(f"no fixtures at {folder}", file=sys.stderr)
        return 3
    res = score(a.model, a.modes.split(","), folder, a.seed, {} if a.no_lesion_filter else None, a.device, a.quarter_turns,
                a.store_as, a.orientation)
    res["quarter_turns"], res["store_as"], res["orientation"] = a.quarter_turns, a.store_as, a.orientation
    res["model"] = a.model or "default"
    for r in res["cases"]:
        print(r["case"], f"turned {r['quarter_turns_applied']}", " ".join(f"{k[5:]} {v:.2f}" for k, v in r.items() if k.startswith("dice_")),
              f" vol truth {r['vol_truth_ml']:.1f} pred", ",".join(f"{r[f'vol_{m}']:.1f}" for m in a.modes.split(",")),
              " infarct px:", ",".join(str(v) for k, v in r.items() if k.startswith("infarct_px")))
    print("mean Dice:", {k: round(v, 3) for k, v in res["mean_dice"].items()})
    print("pooled Dice:", {k: round(v, 3) for k, v in res["pooled_dice"].items()})
    if a.out:
        dump(res, Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
