"""One prepared GPU session for issues 11 and 15: measure the GPU, train on it, score what it trained.

A lent accelerator comes with minutes of budget (one command of at most 10 minutes), so everything
that needs it runs as one process with a wall-time budget, and every phase writes what it measured
before the next begins (a run cut short still returns its figures). Prepared and dry-run on the CPU
(`--dry-run`: 2 cases, 3 steps); see benchmarks/device/README.md for the wheels, the command and the
files that come back.

Phases (each on the GPU where it computes):
1. `speed`: the demo study through the whole pipeline, every mode, fp32 and bf16, the model loaded
   once (the second of two runs is reported: processing seconds per study, issue 15 point 5);
2. `data`: randomised family-A training studies and the four validation sets of the model card
   (same seeds: the figures compare with the shipped model's), by `sdpm synth` on all cores, then
   every case prepared in parallel into the training cache;
3. `train`: a 30-step probe gives the step time, then as many steps as the budget leaves
   (`sdpm train` with the given width, batch and init; EMA weights);
4. `score`: the lesion filter chosen on the 44 validation studies (benchmarks/accuracy/postprocess.py),
   the 12 real slices (benchmarks/accuracy/real_slices.py) - validation data, model selection only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
T0 = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T0


class Summary:
    """summary.json under OUT, rewritten after every phase."""

    def __init__(self, out: Path):
        self.path, self.data = out / "summary.json", {"phases": {}}

    def put(self, phase: str, value) -> None:
        self.data["phases"][phase] = value
        self.data["elapsed_s"] = round(elapsed(), 1)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")
        print(f"[{elapsed():6.0f} s] {phase}: {json.dumps(value)[:400]}", flush=True)


def sh(cmd: list[str], log: Path, timeout: float) -> int:
    """Run a child (python -m sdpm_cli ... or a benchmark script), its output appended to `log`."""
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=max(1.0, timeout), cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            fh.write("(stopped: out of budget)\n")
            return 124


def env_info(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "device": device, "cpu_cores": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def phase_speed(device: str, modes: list[str], precisions: list[str]) -> dict:
    import torch

    from sdpm_cli.ingest import load_study
    from sdpm_cli.pipeline import load_model, segment_study

    lm = load_model(None, device)[0]
    study = load_study(REPO / "examples" / "demo_study")
    rows = []
    for prec in precisions:
        for mode in modes:
            times = []
            for _ in range(2):  # the first run warms up kernels and allocator
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
                seg = segment_study(study, model=lm, mode=mode, seed=0, precision=prec)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            rows.append({"mode": mode, "precision": prec, "processing_s": round(times[-1], 3), "first_s": round(times[0], 3),
                         "model_s": round(seg.timings.get("model_s", float("nan")), 3),
                         "volumes_ml": {k: round(v.volume_ml, 3) for k, v in seg.volumes.items()}})
    return {"study": "examples/demo_study (32 slices)", "rows": rows}


def _prepare_one(args) -> str:
    from sdpm_cli.train.data import load_case

    case, plan, cache = args
    load_case(case, plan, cache)
    return case.case


def phase_data(a, log: Path, deadline: float) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from sdpm_cli.train.data import find_cases

    data, workers = Path(a.data_dir), str(a.workers)
    py = [sys.executable, "-m", "sdpm_cli"]
    val = "--thickness 5 --thickness 2.5 --test-fraction 1".split()
    jobs = [("trainG", ["--cases", str(a.train_cases), "--seed", str(a.train_seed), "--test-fraction", "0"]),
            ("valA", ["--cases", str(a.val_cases), "--seed", "12", *val]),
            ("valA_none", ["--cases", str(a.val_free), "--seed", "13", "--lesion", "none", *val]),
            ("valB", ["--cases", str(a.val_cases), "--seed", "21", "--family", "atlas", *val]),
            ("valB_none", ["--cases", str(a.val_free), "--seed", "22", "--family", "atlas", "--lesion", "none", *val])]
    out = {}
    for name, args in jobs:
        t = time.perf_counter()
        rc = sh(py + ["synth", str(data / name), *args, "--workers", workers, "--force"], log, deadline - time.perf_counter())
        out[name] = {"rc": rc, "s": round(time.perf_counter() - t, 1)}
        if rc != 0:
            raise SystemExit(f"sdpm synth {name} failed (rc {rc}); see the log")
    plan = train_plan(a)
    cases = find_cases(data / "trainG")
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        list(pool.map(_prepare_one, [(c, plan, Path(a.cache)) for c in cases]))
    out["prepare"] = {"cases": len(cases), "s": round(time.perf_counter() - t, 1)}
    return out


def train_plan(a):
    """The plan `sdpm train` will train with, derived by its own code (the init model's plus the
    requested inputs), so that the cases prepared here in parallel are the entries training looks up."""
    from sdpm_cli.preprocess import PreprocessPlan
    from sdpm_cli.train.loop import TrainConfig, apply_init, with_inputs

    cfg = with_inputs({**TrainConfig().to_dict(), "init": a.init or ""}, a.mirror_channel, a.context_slices)
    return PreprocessPlan.from_dict(apply_init(TrainConfig.from_dict(cfg)).plan)


def recipe_args(a) -> list[str]:
    """The input and augmentation options of the run (model card: `--context-slices 1` gave family B's
    infarcts their largest gain, +-15 degrees of rotation kept the real slices' extra-axial bleeds)."""
    return (["--rotate-deg", str(a.rotate_deg), "--context-slices", str(a.context_slices)]
            + (["--mirror-channel"] if a.mirror_channel else []))


def _train_cmd(a, out: Path, steps: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "sdpm_cli", "train", str(Path(a.data_dir) / "trainG"), "--out", str(out),
           "--steps", str(steps), "--batch", str(a.batch), "--patch", str(a.patch), "--width", str(a.width),
           "--lr", str(a.lr), "--lr-min", str(a.lr_min), "--lesion-fraction", str(a.lesion_fraction), "--seed", "3",
           "--cache", a.cache, "--device", a.device, "--no-progress", "--force", *recipe_args(a), *extra]
    return cmd + (["--init", a.init] if a.init else [])


def phase_train(a, log: Path, deadline: float, reserve_s: float) -> dict:
    probe = REPO / "runs" / "gpu_probe.pt"
    t = time.perf_counter()
    rc = sh(_train_cmd(a, probe, a.probe_steps, ["--val-every", "0", "--ckpt-every", "0", "--val-fraction", "0"]),
            log, deadline - time.perf_counter())
    probe_s = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"the training probe failed (rc {rc}); see the log")
    # the probe's wall time includes start-up and loading the cache: an upper bound of the step time
    step_s = probe_s / a.probe_steps
    left = deadline - time.perf_counter() - reserve_s
    steps = int(min(a.max_steps, max(a.probe_steps, left / step_s * 0.9)))
    model = Path(a.model_out)
    t = time.perf_counter()
    rc = sh(_train_cmd(a, model, steps, ["--val-every", str(max(1, steps // 4)), "--ckpt-every", "0",
                                         "--log", str(Path(a.out) / "train_log.jsonl")]),
            log, deadline - time.perf_counter() - reserve_s / 2)
    return {"probe_steps": a.probe_steps, "probe_s": round(probe_s, 1), "step_s_bound": round(step_s, 4), "steps": steps,
            "rc": rc, "train_s": round(time.perf_counter() - t, 1), "width": a.width, "batch": a.batch, "patch": a.patch,
            "init": a.init, "rotate_deg": a.rotate_deg, "context_slices": a.context_slices,
            "mirror_channel": a.mirror_channel, "model": str(model) if model.is_file() else None}


def phase_score(a, log: Path, deadline: float, model: Path) -> dict:
    d = Path(a.data_dir)
    filtered = Path(a.out) / "model_filtered.pt"
    pp = Path(a.out) / "postprocess.json"
    rc = sh([sys.executable, str(REPO / "benchmarks/accuracy/postprocess.py"), "--model", str(model), "--device", a.device,
             "--data", ",".join(str(d / n) for n in ("valA", "valA_none", "valB", "valB_none")), "--mode", "out",
             "--min-peak-prob", "0", "--min-mirror-contrast", "hemorrhage:none,0,2.5",  # score_candidate.py's rule
             "--out", str(pp), "--write", str(filtered)], log, deadline - time.perf_counter())
    res: dict = {"postprocess_rc": rc}
    if rc == 0:
        res["by_folder"] = json.loads(pp.read_text()).get("by_folder")
    if a.fixtures and Path(a.fixtures).is_dir() and filtered.is_file():
        for name, extra in (("real_slices", []), ("real_slices_upright", ["--quarter-turns", "1"])):
            real = Path(a.out) / f"{name}.json"
            rc = sh([sys.executable, str(REPO / "benchmarks/accuracy/real_slices.py"), "--model", str(filtered),
                     "--device", a.device, "--fixtures", a.fixtures, *extra, "--out", str(real)],
                    log, deadline - time.perf_counter())
            res[f"{name}_rc"] = rc
            if rc == 0:
                r = json.loads(real.read_text())
                res[name] = {"mean_dice": r["mean_dice"], "pooled_dice": r["pooled_dice"]}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_session"))
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall time for everything (the command's limit minus a margin)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--phases", default="speed,data,train,score")
    ap.add_argument("--modes", default="out,salient,infer,union")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--data-dir", default="data/gpu")
    ap.add_argument("--cache", default="data/gpu/cache")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--train-cases", type=int, default=120)
    ap.add_argument("--train-seed", type=int, default=61)
    ap.add_argument("--val-cases", type=int, default=16)
    ap.add_argument("--val-free", type=int, default=6)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=112)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=6e-5)
    ap.add_argument("--lesion-fraction", type=float, default=0.4)
    ap.add_argument("--init", default=None, help="fine-tune from this checkpoint instead of training from scratch")
    ap.add_argument("--rotate-deg", type=float, default=15.0, help="sdpm train --rotate-deg")
    ap.add_argument("--context-slices", type=int, default=1, help="sdpm train --context-slices (0: one slice in)")
    ap.add_argument("--mirror-channel", action="store_true", help="sdpm train --mirror-channel")
    ap.add_argument("--probe-steps", type=int, default=30)
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--score-reserve-s", type=float, default=150.0, help="seconds kept for phase 4")
    ap.add_argument("--model-out", default="runs/gpu_model.pt")
    ap.add_argument("--fixtures", default=str(REPO / ".fixtures" / "real_ich_slices"))
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the plumbing, measures nothing")
    a = ap.parse_args(argv)
    if a.dry_run:
        a.device, a.train_cases, a.val_cases, a.val_free, a.probe_steps, a.max_steps = "cpu", 2, 1, 1, 2, 3
        a.modes, a.precisions, a.batch, a.width = "out", "fp32", 4, 8
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "session.log"
    deadline = time.perf_counter() + a.budget_s
    summary = Summary(out)
    phases = a.phases.split(",")
    summary.put("env", env_info(a.device))
    if "speed" in phases:
        summary.put("speed", phase_speed(a.device, a.modes.split(","), a.precisions.split(",")))
    if "data" in phases:
        summary.put("data", phase_data(a, log, deadline))
    model = Path(a.model_out)
    if "train" in phases:
        tr = phase_train(a, log, deadline, a.score_reserve_s)
        summary.put("train", tr)
        if tr["model"] is None:
            return 1
    if "score" in phases and model.is_file():
        summary.put("score", phase_score(a, log, deadline, model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
