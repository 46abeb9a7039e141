"""Choose the fast preset by measurement: Dice on the model grid of sampler settings vs. truth.

    python benchmarks/accuracy/presets.py --data data/val --cases 6 --slices 6
    # the published settings beside the fast preset, every mode of one `union` run each (held-out data)
    python benchmarks/accuracy/presets.py --data data/test_setA --cases 2 --slices 2 \
        --only "union fast,union paper (the published settings)" --out runs/paper_A.json

For the first N validation cases with a lesion, takes the brain slices with the most lesion, runs
`predict` with each candidate setting and scores Dice per class on the model grid (pooled over the
slices). Candidates: `out`; `salient` and `infer` with the fast preset; `infer` started at other
T_i; and, on the same slices, a reduced `paper` preset (the paper's every-step chain and full
salient window, with fewer repeats) to show what the fast preset gives up; and the full `paper`
preset (18,701 network calls per slice: minutes per slice on 2 CPU cores). A `union` row also
scores its `out`, `salient` and `infer` parts. The network runs through the model's ONNX
companion where it has one (the same numbers as torch, BENCHMARKS.md "Every mode without torch").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sdpm_cli.evaluate.cases import dataset_cases
from sdpm_cli.ingest import load_study
from sdpm_cli.model.samplers import make_config, predict
from sdpm_cli.evaluate.metrics import dice  # the one Dice
from sdpm_cli.pipeline import load_model
from sdpm_cli.preprocess import label_to_model, prepare


def candidates() -> dict[str, dict]:
    return {
        "out": dict(mode="out"),
        "salient fast": dict(mode="salient"),
        "infer fast (T_i=25)": dict(mode="infer"),
        "infer T_i=100": dict(mode="infer", T_i=100),
        "infer T_i=250 (the paper's start)": dict(mode="infer", T_i=250),
        "union fast": dict(mode="union"),
        "salient paper window, N=8": dict(mode="salient", preset="paper", samples=8),
        "infer paper chain (every step from T/2), N=2": dict(mode="infer", preset="paper", samples=2),
        "infer every step from 25, N=8": dict(mode="infer", preset="paper", T_i=25, samples=8),
        "union paper (the published settings)": dict(mode="union", preset="paper"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/val", help="validation studies (not the test set: this chooses settings)")
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--only", default="", help="comma-separated candidate names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = ap.parse_args()
    from sdpm_cli.threads import set_cpu_threads

    set_cpu_threads(args.threads)
    lm, _ = load_model(None, "cpu", graphs=True)
    xs, ys, bs = [], [], []
    for pair in dataset_cases(Path(args.data), "test"):
        if len(xs) >= args.cases:
            break
        truth = sitk.ReadImage(str(pair.truth))
        if not sitk.GetArrayViewFromImage(truth).any():
            continue
        prep = prepare(load_study(pair.image).image, lm.plan)
        lab = label_to_model(truth, prep)
        order = np.argsort([-np.count_nonzero(lab[z]) for z in range(lab.shape[0])])[: args.slices]
        xs.append(prep.x[order]), ys.append(lab[order]), bs.append(prep.brain[order])
    x = np.concatenate(xs)[:, None].astype(np.float32)
    y = np.concatenate(ys)
    b = np.concatenate(bs)[:, None].astype(bool)
    results = {}
    names = candidates() if not args.only else {k: v for k, v in candidates().items() if k in args.only.split(",")}
    for name, kw in names.items():
        kw = dict(kw)
        cfg = make_config(mode=kw.pop("mode"), preset=kw.pop("preset", "fast"), samples=kw.pop("samples", None), **kw)
        t0 = time.perf_counter()
        pred = predict(lm.network("fp32"), lm.sched, x, cfg, 0, brain=b)
        row = {"calls_per_slice": pred.n_calls, "s": round(time.perf_counter() - t0, 1)}
        for m in [cfg.mode] + [k for k in pred.masks if k != cfg.mode]:  # a union's parts too
            for c, cls in ((0, "infarct"), (1, "hemorrhage")):
                row[cls if m == cfg.mode else f"{m} {cls}"] = round(float(dice(pred.masks[m][:, c], y == c + 1)), 3)
        results[name] = row
        print(json.dumps({name: row}), flush=True)
    summary = {"data": args.data, "slices": int(x.shape[0]), "network": lm.network("fp32").name, "results": results}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
