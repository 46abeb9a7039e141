"""End-to-end speed of `sdpm segment` for every mode and preset (DICOM read to files written).

    python benchmarks/speed.py --out runs/speed            # CPU, 2 threads, 5 mm and 2.5 mm studies
    python benchmarks/speed.py --device cuda --out runs/speed_gpu

Each run is a fresh `sdpm segment` process (start-up, model load, ingest, preprocessing, sampling,
writing included); peak RAM is that process's own maximum RSS. Network calls per slice come from
the sampler's own count. The `paper` preset costs thousands of calls per slice (hours per study on
a CPU): unless --full-paper is given it is timed on a few slices inside one process and
extrapolated to the study's brain slices plus the measured fixed cost; such rows say "extrapolated".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dump, machine_description, run_measured, sdpm  # noqa: E402

MODES = ("out", "salient", "infer", "union")


def make_studies(root: Path) -> dict[str, Path]:
    """A 5 mm (~30 slices) and a 2.5 mm (~60 slices) 512x512 DICOM study from `sdpm synth`."""
    studies = {}
    for name, thick in (("5mm", "5"), ("2.5mm", "2.5")):
        d = root / f"study_{name}"
        if not d.exists():
            r = run_measured(sdpm("synth", str(d), "--cases", "1", "--seed", "11", "--lesion", "hemorrhage",
                                  "--format", "dicom", "--thickness", thick, "--test-fraction", "0", "-q"))
            if r.returncode:
                raise SystemExit(r.stderr)
        studies[name] = next((d / "dicom").iterdir())
    return studies


def paper_extrapolated(study: Path, mode: str, device: str, threads: int, n_slices: int) -> dict:
    """Time the paper preset on `n_slices` brain slices in-process and scale to the whole study."""
    import numpy as np
    import torch

    from sdpm_cli.ingest import load_study
    from sdpm_cli.model.samplers import make_config, predict
    from sdpm_cli.pipeline import load_model
    from sdpm_cli.preprocess import prepare

    torch.set_num_threads(threads)
    lm, _ = load_model(None, device)
    prep = prepare(load_study(study).image, lm.plan)
    brain = np.asarray(prep.brain_slices)
    mid = brain[len(brain) // 2 : len(brain) // 2 + n_slices]
    x = torch.from_numpy(prep.x[mid][:, None].astype(np.float32)).to(lm.device)
    b = torch.from_numpy(prep.brain[mid][:, None].astype(bool)).to(lm.device)
    cfg = make_config(mode=mode, preset="paper")
    t0 = time.perf_counter()
    with torch.inference_mode():
        pred = predict(lm.net, lm.sched, x, cfg, torch.Generator().manual_seed(0), brain=b)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    per_slice = (time.perf_counter() - t0) / len(mid)
    return {"model_s_per_slice": per_slice, "calls_per_slice": pred.n_calls, "brain_slices": int(len(brain))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/speed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="fast,paper")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--full-paper", action="store_true", help="run the paper preset end to end (hours on CPU)")
    ap.add_argument("--paper-slices", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = make_studies(out)
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for sname, study in studies.items():
        fixed = None
        for preset in args.presets.split(","):
            for mode in args.modes.split(","):
                if preset == "paper" and not args.full_paper:
                    if fixed is None:
                        continue
                    p = paper_extrapolated(study, mode, args.device, args.threads, args.paper_slices)
                    wall = fixed + p["model_s_per_slice"] * p["brain_slices"]
                    rows.append({"study": sname, "preset": preset, "mode": mode, "wall_s": round(wall, 1),
                                 "calls_per_slice": p["calls_per_slice"], "peak_rss_mb": None, "extrapolated": True})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                rep = out / f"report_{sname}_{preset}_{mode}.json"
                r = run_measured(sdpm("segment", str(study), "--mode", mode, "--preset", preset, "--device", args.device,
                                      "--out", str(out / f"mask_{sname}_{preset}_{mode}.nii.gz"), "--report", str(rep),
                                      "--force", "--quiet"), env=env)
                if r.returncode:
                    raise SystemExit(f"segment failed ({r.returncode}): {r.stderr}")
                report = json.loads(rep.read_text())
                run = report.get("run", {})
                timings = run.get("timings", {})
                if preset == "fast" and mode == "out":
                    # everything but the network: the fixed cost a paper-preset run pays as well
                    fixed = r.wall_s - float(timings.get("model_s", 0.0))
                rows.append({"study": sname, "preset": preset, "mode": mode, "wall_s": round(r.wall_s, 2),
                             "calls_per_slice": run.get("n_calls_per_slice"), "peak_rss_mb": round(r.peak_rss_mb),
                             "model_s": timings.get("model_s"), "slices": report.get("series", {}).get("n_slices"),
                             "extrapolated": False})
                print(json.dumps(rows[-1]), flush=True)
    dump({"machine": machine_description(), "device": args.device, "threads": args.threads, "rows": rows},
         out / "speed.json")
    print(f"wrote {out / 'speed.json'}")


if __name__ == "__main__":
    main()
