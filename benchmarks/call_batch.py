"""Issue 15, point 4: how many images should one network call take on a CPU?

    python benchmarks/call_batch.py [--threads 2] [--batch 64] [--size 160] [--rows 64,16,8,6,4,3,2,1] [--out F]
    python benchmarks/call_batch.py --masks "A val=data/valA" --masks "B val=data/valB" --out runs/call_masks.json

The stochastic modes hand the network up to `max_batch` (64) images at once. This times the shipped
network (channels-last, as the pipeline runs it) on one batch of `--batch` random images with
random steps in the salient window, split into calls of `--rows` images, both heads and the noise
head alone (what the infer chain calls), and says whether each split gives bit-identical outputs to
the one-call answer. The pipeline's choice is `InferenceConfig.cpu_call_pixels`; this measurement picked it.

With --masks NAME=FOLDER (nnU-Net layout, imagesTs/): every study is segmented in `--mode` (union)
twice in one process, with the pipeline's calls and with calls of `--reference-rows` images (64:
the previous release, one call per sampler chunk), and the two native label maps are compared
(Dice of all lesion voxels, per-class volume difference %) with the model time of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--rows", default="64,16,8,6,4,3,2,1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--masks", action="append", default=[], help="NAME=FOLDER: compare masks instead of timing calls")
    ap.add_argument("--mode", default="union")
    ap.add_argument("--reference-rows", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.masks:
        return compare_masks(args)
    from sdpm_cli.pipeline import load_model

    net = load_model(args.model, device="cpu")[0].net
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, net.cfg.in_channels, args.size, args.size, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 62, (args.batch,), generator=gen)
    cond = (torch.randn(args.batch, net.cfg.cond_channels, args.size, args.size, generator=gen)
            if net.cfg.cond_channels else None)
    rows_list = [int(r) for r in args.rows.split(",")]
    out = []
    with torch.inference_mode():
        for need_label in (True, False):
            ref = None
            for rows in sorted(rows_list, reverse=True):
                def run():
                    parts = [net(x[i:i + rows], t[i:i + rows], need_label=need_label,
                                 **({} if cond is None else {"cond": cond[i:i + rows]}))
                             for i in range(0, args.batch, rows)]
                    return torch.cat([p[0] for p in parts])
                eps = run()
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - t0)
                if ref is None:
                    ref = eps
                row = {"heads": "both" if need_label else "noise", "rows_per_call": rows,
                       "ms_per_image": 1000 * best / args.batch, "bit_identical_to_first": bool(torch.equal(eps, ref)),
                       "max_abs_diff": float((eps - ref).abs().max())}
                out.append(row)
                print(json.dumps(row), flush=True)
    res = {"machine": machine_description(), "threads": args.threads, "batch": args.batch, "size": args.size,
           "reference_rows": max(rows_list), "rows": out}
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


def compare_masks(args) -> None:
    import SimpleITK as sitk

    from sdpm_cli.ingest import load_study
    from sdpm_cli.evaluate.metrics import dice
    from sdpm_cli.labels import CLASSES
    from sdpm_cli.pipeline import load_model, segment_study

    lm, _ = load_model(args.model, "cpu")
    reference = {"cpu_call_pixels": args.reference_rows * lm.plan.size * lm.plan.size}
    rows = []
    for spec in args.masks:
        name, folder = spec.split("=", 1)
        for img in sorted((Path(folder) / "imagesTs").glob("*.nii*")):
            study = load_study(img)
            res = {}
            for which, over in (("reference", reference), ("pipeline", None)):
                seg = segment_study(study, model=lm, mode=args.mode, seed=0, sampler_overrides=over)
                res[which] = (sitk.GetArrayFromImage(seg.labels), seg.volumes, seg.timings["model_s"])
            (a, va, ta), (b, vb, tb) = res["reference"], res["pipeline"]
            row = {"set": name, "study": img.name, "dice_all": dice(b > 0, a > 0),
                   "voxels_changed": int((a != b).sum()), "model_s_reference": ta, "model_s_pipeline": tb}
            for cname in CLASSES.values():
                x, y = va[cname].volume_ml, vb[cname].volume_ml
                row[f"{cname}_ml"] = [x, y]
                row[f"{cname}_diff_pct"] = 0.0 if x == y else 100.0 * (y - x) / max(x, 1e-9)
            rows.append(row)
            print(json.dumps(row), flush=True)
    worst = max((abs(r[f"{c}_diff_pct"]) for r in rows for c in CLASSES.values()), default=0.0)
    summary = {"studies": len(rows), "min_dice_all": min((r["dice_all"] for r in rows), default=1.0),
               "worst_volume_diff_pct": worst, "studies_changed": sum(r["voxels_changed"] > 0 for r in rows),
               "model_s_reference": sum(r["model_s_reference"] for r in rows),
               "model_s_pipeline": sum(r["model_s_pipeline"] for r in rows)}
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_description(), "mode": args.mode,
                                              "reference_rows": args.reference_rows, "summary": summary,
                                              "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
