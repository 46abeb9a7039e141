"""Issue 15, point 1: could the stochastic modes run on a tile around a candidate instead of the slice?

    python benchmarks/accuracy/tiles.py --set data/valB --studies 3 --slices 3 --margins 16,32,48 --out runs/tiles.json

A tile is only worth it if the network gives the same answer inside it as on the whole slice. This
runs `out` (one deterministic call, the cheapest test of the question) on each of the first
`--studies` studies of a set: on the whole model-grid slice, and on a tile around the slice's
candidate (its `out` >= 0.5 pixels' bounding box plus `--margins` pixels, rounded up to the
network's multiple of 8), for the first `--slices` slices with a candidate of at least 25 mm2. Per
tile: the largest probability difference inside it, and the Dice of the two >= 0.5 masks there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402

from sdpm_cli.evaluate.metrics import dice  # noqa: E402 - the one Dice


def tile_box(mask: np.ndarray, margin: int, multiple: int) -> tuple[slice, slice]:
    """The bounding box of `mask` [H, W] grown by `margin`, each side a multiple of `multiple`,
    shifted (not cut) to stay inside the slice."""
    ys, xs = np.nonzero(mask)
    box = []
    for lo, hi, n in ((ys.min(), ys.max() + 1, mask.shape[0]), (xs.min(), xs.max() + 1, mask.shape[1])):
        lo, hi = max(0, lo - margin), min(n, hi + margin)
        side = min(n, -(-(hi - lo) // multiple) * multiple)
        hi = min(n, lo + side)
        box.append(slice(hi - side, hi))
    return box[0], box[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, help="a folder in nnU-Net layout (imagesTs/)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--studies", type=int, default=3)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--margins", default="16,32,48")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from sdpm_cli.ingest import load_study
    from sdpm_cli.model.network import NetConfig
    from sdpm_cli.model.samplers import predict_out
    from sdpm_cli.pipeline import load_model
    from sdpm_cli.preprocess import prepare

    lm, _ = load_model(args.model, "cpu")
    net = lm.network("fp32")
    multiple = NetConfig.from_dict(lm.header["architecture"]).multiple
    min_px = int(np.ceil(25.0 / lm.plan.spacing_mm**2))
    rows = []
    for img in sorted(Path(args.set, "imagesTs").glob("*.nii*"))[: args.studies]:
        prepared = prepare(load_study(img).image, lm.plan)
        zs = np.asarray(prepared.brain_slices)
        x, cond, brain = prepared.x[zs][:, None], prepared.condition(zs), prepared.brain[zs][:, None]
        whole = predict_out(net, lm.sched, x, cond)[0] * brain  # [B, C, H, W]
        candidates = [i for i in range(len(zs)) if (whole[i] >= 0.5).any(0).sum() >= min_px][: args.slices]
        for i in candidates:
            for margin in (int(m) for m in args.margins.split(",")):
                ys, xs = tile_box((whole[i] >= 0.5).any(0), margin, multiple)
                tile = predict_out(net, lm.sched, x[i:i + 1, :, ys, xs],
                                   None if cond is None else cond[i:i + 1, :, ys, xs])[0][0] * brain[i, :, ys, xs]
                ref = whole[i][:, ys, xs]
                row = {"study": img.name, "slice": int(zs[i]), "margin_px": margin,
                       "tile": [int(ys.stop - ys.start), int(xs.stop - xs.start)],
                       "max_prob_diff": float(np.abs(tile - ref).max()),
                       "dice": dice(ref >= 0.5, tile >= 0.5),
                       "pixels_whole": int((ref >= 0.5).sum()), "pixels_tile": int((tile >= 0.5).sum())}
                rows.append(row)
                print(row, flush=True)
    dump(rows, args.out)
    for margin in dict.fromkeys(r["margin_px"] for r in rows):
        rs = [r for r in rows if r["margin_px"] == margin]
        print(f"margin {margin} px: {len(rs)} tiles, Dice min {min(r['dice'] for r in rs):.3f} "
              f"median {float(np.median([r['dice'] for r in rs])):.3f}, largest probability difference "
              f"{max(r['max_prob_diff'] for r in rs):.3f}")


if __name__ == "__main__":
    main()
