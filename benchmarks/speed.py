"""End-to-end speed of `sdpm segment` for every mode and preset (DICOM read to files written).

    python benchmarks/speed.py --out runs/speed            # CPU, 2 threads, 5 mm and 2.5 mm studies
    python benchmarks/speed.py --device cuda --out runs/speed_gpu
    # this checkout beside an earlier one (git worktree add /tmp/base <commit>), rows interleaved
    python benchmarks/speed.py --presets fast --modes out,union --studies 5mm,2.5mm,0.625mm \
        --baseline-code /tmp/base --out runs/speed_cmp
    # `out` start-up, mask only, three interleaved rounds
    python benchmarks/speed.py --presets fast --modes out --mask-only --repeat 3 --baseline-code /tmp/base --out runs/speed_out

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dump, machine_description, run_measured, sdpm  # noqa: E402

from sdpm_cli.modes import MODES  # noqa: E402 - the one mode tuple


STUDIES = {"5mm": "5", "2.5mm": "2.5", "0.625mm": "0.625"}


def make_studies(root: Path, names: list[str]) -> dict[str, Path]:
    """512x512 DICOM studies from `sdpm synth` (one head, seed 11): 5 mm (~30 slices), 2.5 mm (~60),
    0.625 mm (~240, a thin reconstruction)."""
    studies = {}
    for name, thick in ((n, STUDIES[n]) for n in names):
        d = root / f"study_{name}"
        if not d.exists():
            r = run_measured(sdpm("synth", str(d), "--cases", "1", "--seed", "11", "--lesion", "hemorrhage",
                                  "--format", "dicom", "--thickness", thick, "--test-fraction", "0", "-q"))
            if r.returncode:
                raise SystemExit(r.stderr)
        studies[name] = next((d / "dicom").iterdir())
    return studies


def _runs_from(path: str, env: dict) -> bool:
    """Whether `python -m sdpm_cli` started in `path` imports the package from there."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", "import sdpm_cli; print(sdpm_cli.__file__)"], cwd=path,
                       capture_output=True, text=True, env={**__import__("os").environ, **env, "PYTHONPATH": path})
    return r.stdout.strip().startswith(str(Path(path).resolve()))


def brain_slices(study: Path) -> int:
    from sdpm_cli.ingest import load_study
    from sdpm_cli.pipeline import load_model
    from sdpm_cli.preprocess import prepare

    lm, _ = load_model(None, "cpu")
    return int(len(prepare(load_study(study).image, lm.plan).brain_slices))


def paper_calls(mode: str) -> int:
    from sdpm_cli.model.samplers import calls_per_slice, make_config

    return calls_per_slice(make_config(mode=mode, preset="paper"), 500)[mode]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/speed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="fast,paper")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--full-paper", action="store_true", help="run the paper preset end to end (hours on CPU)")
    ap.add_argument("--studies", default="5mm,2.5mm", help="comma-separated: " + ", ".join(STUDIES))
    ap.add_argument("--baseline-code", default=None,
                    help="a checkout of an earlier sdpm: each row is also run with it, right after this code's")
    ap.add_argument("--repeat", type=int, default=1, help="run each row this many times (the codes interleaved each time)")
    ap.add_argument("--mask-only", action="store_true",
                    help="write only the mask (no --report: what `sdpm segment STUDY --out MASK` costs; no stage timings)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = make_studies(out, args.studies.split(","))
    codes = [("this", None)] + ([("baseline", str(Path(args.baseline_code).resolve()))] if args.baseline_code else [])
    for _, path in codes[1:]:
        if not _runs_from(path, {}):
            raise SystemExit(f"--baseline-code: `python -m sdpm_cli` started in {path} does not import it from there")
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for sname, study in studies.items():
        fixed = per_call_s = None
        for preset in args.presets.split(","):
            for mode in args.modes.split(","):
                if preset == "paper" and not args.full_paper:
                    if fixed is None or per_call_s is None:
                        continue
                    # measured seconds per network call (fast union run) x the paper's call count
                    n_brain = brain_slices(study)
                    calls = paper_calls(mode)
                    wall = fixed + per_call_s * calls * n_brain
                    rows.append({"study": sname, "preset": preset, "mode": mode, "wall_s": round(wall, 1),
                                 "calls_per_slice": calls, "peak_rss_mb": None, "extrapolated": True})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                for rnd, (code, path) in ((k, c) for k in range(args.repeat) for c in codes):
                    rep = out / f"report_{sname}_{preset}_{mode}_{code}.json"
                    # the other checkout runs from its own folder: `python -m` puts the working folder first on
                    # sys.path, ahead of an editable install of this one (PYTHONPATH alone is not enough)
                    code_env = {**env, **({"PYTHONPATH": path} if path else {})}
                    extra = () if args.mask_only else ("--report", str(rep.resolve()))
                    r = run_measured(sdpm("segment", str(study.resolve()), "--mode", mode, "--preset", preset, "--device", args.device,
                                          "--out", str((out / f"mask_{sname}_{preset}_{mode}_{code}.nii.gz").resolve()),
                                          *extra, "--force", "--quiet"), env=code_env, cwd=path)
                    if r.returncode:
                        raise SystemExit(f"segment failed ({r.returncode}): {r.stderr}")
                    report = {} if args.mask_only else json.loads(rep.read_text())
                    run = report.get("run", {})
                    timings = run.get("timings", {})
                    if code == "this" and preset == "fast" and mode == "union" and timings:
                        per_call_s = float(timings["model_s"]) / (run["n_calls_per_slice"] * brain_slices(study))
                    if code == "this" and preset == "fast" and mode == "out" and timings:
                        # everything but the network: the fixed cost a paper-preset run pays as well
                        fixed = r.wall_s - float(timings.get("model_s", 0.0))
                    rows.append({"study": sname, "preset": preset, "mode": mode, "code": code, "round": rnd, "wall_s": round(r.wall_s, 2),
                                 "network_runtime": run.get("network_runtime"),
                                 "calls_per_slice": run.get("n_calls_per_slice"), "peak_rss_mb": round(r.peak_rss_mb),
                                 "model_s": timings.get("model_s"), "postprocess_s": timings.get("postprocess_s"), "slices": report.get("series", {}).get("n_slices"),
                                 "volumes_ml": {k: v.get("volume_ml") for k, v in report.get("volumes", {}).items()},
                                 "extrapolated": False})
                    print(json.dumps(rows[-1]), flush=True)
    dump({"machine": machine_description(), "device": args.device, "threads": args.threads, "mask_only": args.mask_only,
          "rows": rows},
         out / "speed.json")
    print(f"wrote {out / 'speed.json'}")


if __name__ == "__main__":
    main()
