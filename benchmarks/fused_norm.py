"""Issue 15, point 4: is ONNX Runtime's time outside the convolutions something a graph rewrite recovers?

    python benchmarks/fused_norm.py [--threads 2] [--batch 32] [--rounds 4] [--out runs/fused_norm.json]

Profiled with ONNX Runtime's own profiler, a call of the shipped companion graph
(`models/sdpm-default.net.onnx`, both heads, 4 slices of 160 x 160) spends about half its time
outside the convolutions: GroupNorm exported at opset 17 as Reshape -> InstanceNormalization ->
Reshape -> Mul -> Add, the time scale/shift as another Mul -> Add, SiLU, and layout reorders around
every norm. This exports the same weights with each residual block's two norms written as one
per-(slice, channel) multiply-add (the group statistics from per-channel means of x and x^2, the
norm's affine and the time scale/shift folded into the same two numbers: algebraically the same
network) and times both graphs on the same random slices in calls of 4, the two interleaved per
round; also the op-type breakdown of each (`--profile`).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dump, machine_description  # noqa: E402


def norm_as_affine(norm: torch.nn.GroupNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) [N, C, 1, 1] with norm(x) == x * a + b (statistics from per-channel means)."""
    n, c = x.shape[:2]
    g = norm.num_groups
    m = F.adaptive_avg_pool2d(x, 1).reshape(n, g, -1).mean(-1, keepdim=True)
    m2 = F.adaptive_avg_pool2d(x * x, 1).reshape(n, g, -1).mean(-1, keepdim=True)
    r = torch.rsqrt((m2 - m * m).clamp_min(0) + norm.eps)
    a = r.expand(n, g, c // g).reshape(n, c, 1, 1) * norm.weight.view(1, c, 1, 1)
    b = norm.bias.view(1, c, 1, 1) - m.expand(n, g, c // g).reshape(n, c, 1, 1) * a
    return a, b


def fused_forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """`network.ResBlock.forward` with both norms (and the time scale/shift) as one multiply-add each."""
    a, b = norm_as_affine(self.norm1, x)
    h = self.conv1(F.silu(x * a + b))
    scale, shift = self.time(temb)[:, :, None, None].chunk(2, dim=1)
    a2, b2 = norm_as_affine(self.norm2, h)
    return self.conv2(F.silu(h * (a2 * (1 + scale)) + (b2 * (1 + scale) + shift))) + self.skip(x)


def op_profile(path: str, feed: dict, threads: int, calls: int = 8) -> dict[str, float]:
    """ms per call by op type (ONNX Runtime's profiler; otherwise the pipeline's session options)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tempfile.mkdtemp()) / "ort")
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        s.run(None, feed)
    events = json.loads(Path(s.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"] / 1000.0 / calls
    return dict(by_op.most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/sdpm-default.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.model.network import ResBlock
    from sdpm_cli.model.onnx_net import _session, companion_paths

    net, _ = load_checkpoint(args.model)
    fused = copy.deepcopy(net.eval())
    for m in fused.modules():
        if isinstance(m, ResBlock):
            m.forward = types.MethodType(fused_forward, m)
    k = net.cfg.cond_channels
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, 1, 160, 160)).astype(np.float32)
    t = rng.integers(0, 62, args.batch).astype(np.int64)
    cond = rng.uniform(-1, 1, (args.batch, k, 160, 160)).astype(np.float32) if k else None
    names = ["x", "t"] + (["cond"] if k else [])

    class Call(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x, t, cond=None):
            return self.net(x, t, need_label=True, cond=cond)

    path = str(Path(tempfile.mkdtemp()) / "fused.onnx")
    dyn = {n: ({0: "b"} if n == "t" else {0: "b", 2: "h", 3: "w"}) for n in names + ["eps", "y"]}
    example = tuple(torch.from_numpy(a[:2]) for a in (x, t) + ((cond,) if k else ()))
    with torch.no_grad():
        torch.onnx.export(Call(fused).eval(), example, path, input_names=names, output_names=["eps", "y"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    graphs = {"shipped companion": str(companion_paths(args.model)["net"]), "fused norms": path}
    sessions = {name: _session(Path(p), args.threads) for name, p in graphs.items()}  # as the pipeline opens them

    def feed(i: int, j: int) -> dict:
        return {"x": x[i:j], "t": t[i:j]} | ({"cond": cond[i:j]} if k else {})

    ref, got = (sessions[n].run(None, feed(0, 4)) for n in graphs)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    ms: dict[str, list[float]] = {n: [] for n in graphs}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            for i in range(0, args.batch, 4):
                s.run(None, feed(i, i + 4))
            ms[name].append((time.perf_counter() - t0) / args.batch * 1000.0)
    res = {"machine": machine_description(), "threads": args.threads, "ms_per_slice": ms,
           "ratio_per_round": [a / b for a, b in zip(*ms.values())], "max_output_diff": diff}
    if args.profile:
        res["ms_per_call_by_op"] = {n: op_profile(p, feed(0, 4), args.threads) for n, p in graphs.items()}
    print(json.dumps(res, indent=2))
    if args.out:
        dump(res, args.out)


if __name__ == "__main__":
    main()
