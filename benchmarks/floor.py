"""The floor: FLOPs of one network call against what the device can do.

    python benchmarks/floor.py [--device cpu|cuda] [--threads 2]

Prints the default network's FLOPs per call (encoder + both heads, and the chain's eps-only call),
the achieved throughput of batched forward calls at 160 x 160, and the device's practical peak
measured with a large fp32 matrix multiply (the best case for any dense kernel on that device).
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


def timed(fn, device: torch.device, repeat: int) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=17)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    from sdpm_cli.model.network import NetConfig, SDPMNet, count_flops, flops_breakdown

    cfg = NetConfig()
    net = SDPMNet(cfg).to(dev).eval()
    flops = count_flops(cfg, 160, 160)
    parts = flops_breakdown(cfg, 160, 160)
    x = torch.randn(args.batch, 1, 160, 160, device=dev)
    t = torch.full((args.batch,), 10, device=dev, dtype=torch.long)
    with torch.inference_mode():
        s_full = timed(lambda: net(x, t, need_label=True), dev, 5)
        net_cl = SDPMNet(cfg).to(dev).eval().to(memory_format=torch.channels_last)
        s_cl = timed(lambda: net_cl(x, t, need_label=True), dev, 5)
    n = 2048 if dev.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    s_mm = timed(lambda: a @ b, dev, 5)
    res = {
        "machine": machine_description(),
        "device": str(dev),
        "threads": args.threads,
        "flops_per_call_160": flops,
        "flops_breakdown_160": parts,
        "batch": args.batch,
        "s_per_call": s_full / args.batch,
        "achieved_gflops": flops * args.batch / s_full / 1e9,
        "matmul_peak_gflops": 2 * n**3 / s_mm / 1e9,
        "channels_last_speedup": s_full / s_cl,  # same network in NHWC memory layout, same run
    }
    res["fraction_of_peak"] = res["achieved_gflops"] / res["matmul_peak_gflops"]
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
