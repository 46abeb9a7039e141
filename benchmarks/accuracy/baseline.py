"""Train and run a MONAI baseline (SegResNet, UNet, UNETR) on exactly what SDPM is trained on.

Same data (an `sdpm synth` nnU-Net folder), same preprocessing (`sdpm_cli.preprocess`: brain mask,
window, 1.25 mm model grid), same lesion-aware patch sampler, augmentation, optimiser, poly
schedule, EMA and step budget as `sdpm train`; only the network and the loss differ (a plain
segmentation net trained with per-class sigmoid BCE + soft Dice, as MONAI users would).

    python benchmarks/accuracy/baseline.py train --arch segresnet --data data/train --out runs/segresnet.pt --steps 5000
    python benchmarks/accuracy/baseline.py predict --model runs/segresnet.pt --data data/test --out runs/pred_segresnet

Predictions are label NIfTI files on each case's native grid, ready for `sdpm evaluate PRED TRUTH`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_slices.py beside this file

from sdpm_cli.labels import NUM_CLASSES
from sdpm_cli.preprocess import PreprocessPlan, labels_from_probs, prepare, probs_to_native
from sdpm_cli.train.augment import AugmentConfig, augment, labels_to_pm1
from sdpm_cli.train.data import PatchSampler, find_cases, load_case, split_cases, stack_cases
from sdpm_cli.train.loop import EMA, poly_lr


def build(arch: str, patch: int, in_channels: int = 1) -> torch.nn.Module:
    """Networks sized like the default SDPM model (first level 16 channels, four levels);
    `in_channels` 1 + 2k with k neighbouring slices each side (SegResNet only, as the default model
    reads them with `--context-slices`)."""
    from monai.networks import nets

    if arch == "segresnet":
        return nets.SegResNet(spatial_dims=2, in_channels=in_channels, out_channels=NUM_CLASSES, init_filters=16,
                              blocks_down=(1, 2, 2, 2), blocks_up=(1, 1, 1))
    if arch == "unet":
        return nets.UNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES, channels=(16, 32, 64, 64),
                         strides=(2, 2, 2), num_res_units=1)
    if arch == "unetr":
        return nets.UNETR(in_channels=1, out_channels=NUM_CLASSES, img_size=(patch, patch), spatial_dims=2,
                          feature_size=16, hidden_size=192, mlp_dim=768, num_heads=6)
    raise SystemExit(f"unknown arch {arch}")


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class sigmoid BCE + soft Dice (multi-label, like SDPM's label channels)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)) + 1)
    return bce + dice.mean()


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    plan = PreprocessPlan(context_slices=args.context_slices)
    cases, _ = split_cases(find_cases(Path(args.data)), args.val_fraction, args.seed)  # the same split as sdpm train
    arrays = [load_case(c, plan, Path(args.cache) if args.cache else None) for c in cases]
    data = stack_cases(arrays)
    sampler = PatchSampler(data, args.patch, args.lesion_fraction, args.seed, context_slices=args.context_slices)
    net = build(args.arch, args.patch, 1 + plan.condition_channels).to(memory_format=torch.channels_last)
    ema = EMA(net, 0.999)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    aug = AugmentConfig()
    t0 = time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = poly_lr(step, args.steps, args.lr, 6e-5)
        x, lab, brain = (torch.from_numpy(a) for a in sampler.sample(args.batch))
        x, lab, brain = augment(x.float(), lab, brain, aug, gen)
        target = (labels_to_pm1(lab) + 1) / 2
        loss = seg_loss(net(x.contiguous(memory_format=torch.channels_last)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net)
        if step % 100 == 0 or step == args.steps - 1:
            print(json.dumps({"step": step, "loss": round(float(loss), 5), "elapsed_s": round(time.time() - t0, 1)}), flush=True)
    weights = {k: v.contiguous() for k, v in ema.model.state_dict().items()}  # the EMA weights, like sdpm train
    torch.save({"arch": args.arch, "patch": args.patch, "steps": args.steps, "state_dict": weights,
                "context_slices": args.context_slices, "wall_s": time.time() - t0}, args.out)


def load_baseline(path: str):
    ck = torch.load(path, weights_only=True)
    net = build(ck["arch"], ck["patch"], 1 + 2 * int(ck.get("context_slices", 0)))
    net.load_state_dict(ck["state_dict"])
    return net.eval(), ck


@torch.inference_mode()
def predict_image(net, ck, image):
    """Label map (sitk, the image's grid) of one HU image: same preprocessing and grid as SDPM."""
    import SimpleITK as sitk

    prep = prepare(image, PreprocessPlan(context_slices=int(ck.get("context_slices", 0))))
    probs = np.zeros((NUM_CLASSES,) + prep.x.shape, dtype=np.float32)
    idx = np.asarray(prep.brain_slices)
    for s in range(0, len(idx), 16):
        sl = idx[s : s + 16]
        x = prep.x[sl][:, None].astype(np.float32)
        cond = prep.condition(sl)
        x = torch.from_numpy(x if cond is None else np.concatenate([x, cond], axis=1))
        if ck["arch"] == "unetr":  # fixed input size: tile the 160 grid with the training patch
            p = _tiled(net, x, ck["patch"])
        else:
            p = torch.sigmoid(net(x))
        probs[:, sl] = (p * torch.from_numpy(prep.brain[sl][:, None])).numpy().transpose(1, 0, 2, 3)
    img = sitk.GetImageFromArray(labels_from_probs(probs_to_native(probs, prep)))
    img.CopyInformation(image)
    return img


def predict(args) -> None:
    import SimpleITK as sitk

    from sdpm_cli.evaluate.cases import dataset_cases
    from sdpm_cli.ingest import load_study

    torch.set_num_threads(args.threads)
    net, ck = load_baseline(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    from sdpm_cli.errors import InputRejected

    for pair in dataset_cases(Path(args.data), "test"):
        try:
            study = load_study(pair.image)
        except InputRejected as exc:  # as sdpm evaluate: reported, not scored
            print(pair.case, "not scored:", str(exc).splitlines()[0], flush=True)
            continue
        sitk.WriteImage(predict_image(net, ck, study.image), str(out / f"{pair.case}.nii.gz"), useCompression=True)
    print(json.dumps({"predicted": str(out), "wall_s": round(time.time() - t0, 1)}))


def predict_real(args) -> None:
    """The real CT-ICH validation slices, scored like real_slices.py (20-slice column, middle slice)."""
    import SimpleITK as sitk

    from real_slices import N_REPEAT, cases, column, dice, read_slice
    from sdpm_cli.labels import CLASSES
    from sdpm_cli.postprocess.components import LesionFilter, filter_class_masks

    torch.set_num_threads(args.threads)
    net, ck = load_baseline(args.model)
    flt = LesionFilter.from_dict(json.loads(Path(args.filter).read_text())["chosen"]) if args.filter else None
    rows = []
    for name, ct, mask in cases():
        col = column(read_slice(ct, args.quarter_turns))
        lab = sitk.GetArrayFromImage(predict_image(net, ck, col))
        if flt is not None:
            sp = col.GetSpacing()
            keep = filter_class_masks(np.stack([lab == c for c in CLASSES]), flt, float(np.prod(sp)) / 1000.0, float(sp[2]))
            lab = np.where(keep[1], 2, np.where(keep[0], 1, 0))
        truth = sitk.GetArrayFromImage(read_slice(mask, args.quarter_turns))[0] > 0
        rows.append({"case": name, "dice": dice(lab[N_REPEAT // 2] == 2, truth)})
        print(name, f"{rows[-1]['dice']:.2f}", flush=True)
    res = {"mean_dice": float(np.mean([r["dice"] for r in rows])), "quarter_turns": args.quarter_turns, "cases": rows}
    print(json.dumps({"mean_dice": round(res["mean_dice"], 3)}))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


def _tiled(net, x: torch.Tensor, patch: int) -> torch.Tensor:
    n = x.shape[-1]
    starts = sorted(set(list(range(0, n - patch + 1, patch // 2)) + [n - patch]))
    acc = torch.zeros((x.shape[0], NUM_CLASSES, n, n))
    cnt = torch.zeros((1, 1, n, n))
    for i in starts:
        for j in starts:
            acc[..., i : i + patch, j : j + patch] += torch.sigmoid(net(x[..., i : i + patch, j : j + patch]))
            cnt[..., i : i + patch, j : j + patch] += 1
    return acc / cnt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--arch", required=True, choices=["segresnet", "unet", "unetr"])
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--patch", type=int, default=96)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", default="")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--lesion-fraction", type=float, default=0.5)
    t.add_argument("--val-fraction", type=float, default=0.1, help="cases held out as sdpm train does (not used)")
    t.add_argument("--context-slices", type=int, default=0, help="neighbouring slices each side as input channels")
    p = sub.add_parser("predict")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("predict-real", help="score the real CT-ICH validation slices")
    r.add_argument("--model", required=True)
    r.add_argument("--filter", default=None, help="postprocess.py JSON whose chosen lesion filter is applied")
    r.add_argument("--out", default=None)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--quarter-turns", type=int, default=0,
                   help="turn every slice and its mask by this many x 90 degrees first (1: heads upright, as real_slices.py)")
    args = ap.parse_args()
    {"train": train, "predict": predict, "predict-real": predict_real}[args.cmd](args)


if __name__ == "__main__":
    main()
