"""Does gating the stochastic modes change the answer? Gated vs ungated, per study, same seed.

For every study of the given sets: `sdpm segment` in the requested mode (default union) with and
without gating; per study the Dice of the two native-grid masks (per class and all lesion voxels),
the volume difference in %, the slices the stochastic modes ran on, and the model time of each.
Noise is drawn per (mode, slice), so a gated-in slice gets the ungated run's noise: differences
come only from slices gated out (and float rounding of batch-size-dependent convolution).

    python benchmarks/accuracy/gating.py --set "A val=data/valA" --set "B val=data/valB" \
        --set "A none=data/valA_none" --mode union --gates 0.2:25,0.5:25 --threads 2 --out runs/gating.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from sdpm_cli.evaluate.metrics import dice  # noqa: E402 - the one Dice
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", required=True, help="NAME=FOLDER (nnU-Net layout: imagesTs/)")
    ap.add_argument("--mode", default="union")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="at most this many studies per set (0 = all)")
    ap.add_argument("--offset", type=int, default=0, help="skip this many studies of each set first (sorted by name)")
    ap.add_argument("--gates", default="0.2:25", help="comma-separated variants against the ungated fp32 run: "
                    "THRESHOLD:AREA_MM2[:MARGIN_SLICES[:MARGIN_THRESHOLD]] (a gate; margin and its threshold default the config's), bf16 (no gate, "
                    "bf16 network), or bf16+THRESHOLD:AREA_MM2[:MARGIN_SLICES]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sdpm_cli.ingest import load_study
    from sdpm_cli.labels import CLASSES
    from sdpm_cli.pipeline import load_model, segment_study

    lm, _ = load_model(args.model, "cpu")
    gates = [g.strip() for g in args.gates.split(",") if g.strip()]
    rows = []
    for spec in args.set:
        name, folder = spec.split("=", 1)
        images = sorted((Path(folder) / "imagesTs").glob("*.nii*"))
        images = images[args.offset:]
        if args.limit:
            images = images[: args.limit]
        for img in images:
            study = load_study(img)
            t0 = time.perf_counter()
            full = segment_study(study, model=lm, mode=args.mode, seed=0, gating=False)
            t_full = time.perf_counter() - t0
            a = sitk.GetArrayFromImage(full.labels)
            for g in gates:
                precision = "bf16" if g.startswith("bf16") else "fp32"
                gate = g.split("+", 1)[1] if "+" in g else ("" if g == "bf16" else g)
                over = {}
                if gate:
                    parts = gate.split(":")
                    over = {"gate_threshold": float(parts[0]), "gate_min_area_mm2": float(parts[1])}
                    if len(parts) > 2:
                        over["gate_margin"] = int(parts[2])
                    if len(parts) > 3:
                        over["gate_margin_threshold"] = float(parts[3])
                t0 = time.perf_counter()
                seg = segment_study(study, model=lm, mode=args.mode, seed=0, gating=bool(gate), precision=precision,
                                    sampler_overrides=over)
                t_g = time.perf_counter() - t0
                b = sitk.GetArrayFromImage(seg.labels)
                row = {"set": name, "study": img.name, "gate": g, "dice_all": dice(a > 0, b > 0),
                       "brain_slices": seg.brain_slices, "gated_slices": seg.stochastic_slices,
                       "time_full_s": t_full, "time_gated_s": t_g}
                for label, cname in CLASSES.items():
                    vf, vg = full.volumes[cname].volume_ml, seg.volumes[cname].volume_ml
                    row[f"dice_{cname}"] = dice(a == label, b == label)
                    row[f"{cname}_full_ml"] = vf
                    row[f"{cname}_gated_ml"] = vg
                    row[f"{cname}_diff_pct"] = 0.0 if vf == vg else 100.0 * (vg - vf) / max(vf, 1e-9)
                rows.append(row)
                print(f"{name} {img.name} gate {g}: dice {row['dice_all']:.4f}, slices {row['gated_slices']}/{row['brain_slices']}, "
                      f"{t_full:.1f} s -> {t_g:.1f} s, "
                      + ", ".join(f"{c} {row[f'{c}_full_ml']:.2f}->{row[f'{c}_gated_ml']:.2f} mL" for c in CLASSES.values()),
                      flush=True)
    dump(rows, args.out)
    # summary per set
    print("\n| set | gate (p, mm2) | studies | min Dice (all lesion voxels) | worst volume diff % | stochastic slices | time full -> gated |")
    print("|---|---|---|---|---|---|---|")
    for name, g in dict.fromkeys((r["set"], r["gate"]) for r in rows):
        rs = [r for r in rows if r["set"] == name and r["gate"] == g]
        worst = max((abs(r[f"{c}_diff_pct"]) for r in rs for c in CLASSES.values()
                     if max(r[f"{c}_full_ml"], r[f"{c}_gated_ml"]) > 0.0), default=0.0)
        print(f"| {name} | {g} | {len(rs)} | {min(r['dice_all'] for r in rs):.4f} | {worst:.2f} | "
              f"{sum(r['gated_slices'] for r in rs)}/{sum(r['brain_slices'] for r in rs)} | "
              f"{sum(r['time_full_s'] for r in rs):.0f} s -> {sum(r['time_gated_s'] for r in rs):.0f} s |")


if __name__ == "__main__":
    main()
