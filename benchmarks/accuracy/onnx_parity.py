"""Does the network through the ONNX companion give torch's answer? Per study and mode, same model and options.

On the CPU in fp32 the network runs through `models/<name>.net.onnx` / `.eps.onnx` (ONNX Runtime, no
torch import) when the checkpoint has a valid companion (until 2026-12-06 only `out` did, through
`<name>.out.onnx`; this script was `out_graph.py` then). This runs every study of the given sets both
ways (`load_model(graphs=True)` and `graphs=False`) in each mode and reports, per study, the Dice of
the two native-grid masks (per class and all lesion voxels), the volume difference in %, the
difference of the interval bounds, the largest probability difference on the model grid and the
network time of each. The noise is the same numbers either way (`model.noise`); float rounding
differs between the two runtimes (different convolution kernels), so a voxel whose probability lies
within ~1e-3 of the 0.5 threshold may flip, and through the stochastic chain such differences can
grow a little; nothing else may differ.

    python benchmarks/accuracy/onnx_parity.py --modes out,union --set "A val=data/valA" \
        --set "A none=data/valA_none" --set "B val=data/valB" --set "B none=data/valB_none" \
        --set "C test=data/test_setC" --dicom "demo=examples/demo_study" --threads 2 --out runs/onnx_parity.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from sdpm_cli.evaluate.metrics import dice  # noqa: E402 - the one Dice
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import dump  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], help="NAME=FOLDER (nnU-Net layout: imagesTs/)")
    ap.add_argument("--dicom", action="append", default=[], help="NAME=STUDY (a DICOM folder or volume file)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--modes", default="out,union", help="comma-separated modes to compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="at most this many studies per set (0 = all)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from sdpm_cli.ingest import load_study
    from sdpm_cli.labels import CLASSES
    from sdpm_cli.pipeline import load_model, segment_study
    from sdpm_cli.threads import set_cpu_threads

    set_cpu_threads(args.threads)
    graph, _ = load_model(args.model, "cpu", graphs=True)
    if graph.graphs is None:
        sys.exit("this model has no usable ONNX companion (sdpm export-onnx MODEL)")
    eager, _ = load_model(args.model, "cpu", graphs=False)
    studies = []
    for spec in args.set:
        name, folder = spec.split("=", 1)
        images = sorted((Path(folder) / "imagesTs").glob("*.nii*"))
        studies += [(name, p) for p in (images[: args.limit] if args.limit else images)]
    studies += [(spec.split("=", 1)[0], Path(spec.split("=", 1)[1])) for spec in args.dicom]
    rows = []
    for (name, path), mode in ((s, m) for s in studies for m in args.modes.split(",")):
        study = load_study(path)
        res = {}
        for kind, lm in (("torch", eager), ("onnx", graph)):
            t0 = time.perf_counter()
            res[kind] = segment_study(study, model=lm, mode=mode, seed=0)
            res[kind].timings["wall_s"] = time.perf_counter() - t0
        a, b = (sitk.GetArrayFromImage(res[k].labels) for k in ("torch", "onnx"))
        pa, pb = (res[k].probs._m for k in ("torch", "onnx"))  # the model-grid probabilities
        row = {"set": name, "mode": mode, "study": path.name, "dice_all": dice(a > 0, b > 0), "voxels_differ": int((a != b).sum()),
               "max_abs_dprob": float(np.abs(pa - pb).max()),
               "model_s_torch": res["torch"].timings["model_s"], "model_s_onnx": res["onnx"].timings["model_s"]}
        for label, cname in CLASSES.items():
            vt, vo = res["torch"].volumes[cname], res["onnx"].volumes[cname]
            row[f"dice_{cname}"] = dice(a == label, b == label)
            row[f"{cname}_torch_ml"], row[f"{cname}_onnx_ml"] = vt.volume_ml, vo.volume_ml
            row[f"{cname}_diff_pct"] = 0.0 if vt.volume_ml == vo.volume_ml else 100.0 * (vo.volume_ml - vt.volume_ml) / max(vt.volume_ml, 1e-9)
            row[f"{cname}_ci_max_diff_ml"] = (0.0 if vt.ci95_ml is None and vo.ci95_ml is None else
                                              max(abs(x - y) for x, y in zip(vt.ci95_ml, vo.ci95_ml)))
        rows.append(row)
        print(f"{name} {mode} {path.name}: dice {row['dice_all']:.5f}, {row['voxels_differ']} voxels differ, "
              f"max |dp| {row['max_abs_dprob']:.1e}, model {row['model_s_torch']:.2f} -> {row['model_s_onnx']:.2f} s, "
              + ", ".join(f"{c} {row[f'{c}_torch_ml']:.3f}->{row[f'{c}_onnx_ml']:.3f} mL (interval +-{row[f'{c}_ci_max_diff_ml']:.3f})"
                          for c in CLASSES.values()), flush=True)
    dump(rows, args.out)
    print("\n| set | mode | studies | min Dice (all lesion voxels) | studies with any voxel changed | worst volume diff % | "
          "worst interval bound change mL | max abs prob diff | network s torch -> onnx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mode in dict.fromkeys((r["set"], r["mode"]) for r in rows):
        rs = [r for r in rows if r["set"] == name and r["mode"] == mode]
        worst = max([abs(r[f"{c}_diff_pct"]) for r in rs for c in CLASSES.values()
                     if max(r[f"{c}_torch_ml"], r[f"{c}_onnx_ml"]) > 0.0] or [0.0])
        ci = max(r[f"{c}_ci_max_diff_ml"] for r in rs for c in CLASSES.values())
        print(f"| {name} | {mode} | {len(rs)} | {min(r['dice_all'] for r in rs):.4f} | {sum(r['voxels_differ'] > 0 for r in rs)} | "
              f"{worst:.3f} | {ci:.3f} | {max(r['max_abs_dprob'] for r in rs):.1e} | "
              f"{sum(r['model_s_torch'] for r in rs):.1f} -> {sum(r['model_s_onnx'] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
