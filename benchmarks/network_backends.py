"""Issue 15, point 4: does another execution backend lift the network's CPU throughput?

    python benchmarks/network_backends.py [--threads 2] [--batch 17] [--skip compile,onnx] [--out F]

Times one batched call of the shipped network (t = 0, both heads, 160 x 160: what `out` runs per
batch of slices) under each backend in one process, the same input for all, and checks each
backend's outputs against the pipeline's own path (eager, channels-last). Backends:
  eager_channels_last  the pipeline's path today (pipeline.load_model)
  eager_nchw           the default memory layout
  torchscript_frozen   torch.jit.trace + torch.jit.freeze
  torchscript_optimized  the same + torch.jit.optimize_for_inference (oneDNN fusion)
  onnxruntime          torch.onnx.export (opset 17) + onnxruntime, ORT_ENABLE_ALL (skipped if not installed)
  torch_compile        torch.compile (inductor), default mode
Each row reports the minimum of `--repeat` timed calls after one warm call, the one-off preparation
time (trace, export, compile and its first call), and the largest absolute difference from the
reference output. A backend is only worth adopting if it wins clearly per CLI process, where the
preparation is paid on every study.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description  # noqa: E402


class _BothHeads(torch.nn.Module):
    """The network as a plain tensor -> (tensor, tensor) function, for tracing and export."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        eps, label = self.net(x, t, need_label=True, cond=cond)
        return eps, label


def _channels_last(inputs: tuple) -> tuple:
    """The image tensors of `inputs` in channels-last memory (the pipeline's CPU layout)."""
    return tuple(a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else a for a in inputs)


def _time(fn: Callable[[], object], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _max_diff(a: tuple, b: tuple) -> float:
    return max(float((torch.as_tensor(u) - v).abs().max()) for u, v in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=17)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--skip", default="", help="comma-separated backends to leave out (e.g. compile,onnx)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    torch.set_num_threads(args.threads)
    from sdpm_cli.pipeline import load_model

    loaded, _ = load_model(args.model, device="cpu")
    net_cl = loaded.net  # channels-last, as the pipeline runs it
    cin = net_cl.cfg.in_channels
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cin, args.size, args.size, generator=gen)
    t = torch.zeros(args.batch, dtype=torch.long)
    k = net_cl.cfg.cond_channels  # the clean conditioning channels (neighbouring slices, mirror) of this model
    c = torch.randn(args.batch, k, args.size, args.size, generator=gen) if k else None
    inputs = (x, t) if c is None else (x, t, c)
    names = ["x", "t", "cond"][: len(inputs)]
    wrapped = _BothHeads(net_cl).eval()
    rows: list[dict] = []

    with torch.inference_mode():
        ref = wrapped(*_channels_last(inputs))
        s_ref = _time(lambda: wrapped(*_channels_last(inputs)), args.repeat)
        rows.append({"backend": "eager_channels_last", "s_per_batch": s_ref, "prep_s": 0.0, "max_abs_diff": 0.0})

        net_nchw = _BothHeads(copy.deepcopy(net_cl)).to(memory_format=torch.contiguous_format).eval()
        rows.append({"backend": "eager_nchw", "s_per_batch": _time(lambda: net_nchw(*inputs), args.repeat),
                     "prep_s": 0.0, "max_abs_diff": _max_diff(net_nchw(*inputs), ref)})

    if "torchscript" not in skip:
        with torch.inference_mode(False), torch.no_grad():
            for name, optimize in (("torchscript_frozen", False), ("torchscript_optimized", True)):
                t0 = time.perf_counter()
                ts = torch.jit.freeze(torch.jit.trace(wrapped, inputs, check_trace=False))
                if optimize:
                    ts = torch.jit.optimize_for_inference(ts)
                ts(*inputs)
                ts(*inputs)  # the profiling executor specialises on the second call
                prep = time.perf_counter() - t0
                rows.append({"backend": name, "s_per_batch": _time(lambda: ts(*inputs), args.repeat),
                             "prep_s": prep, "max_abs_diff": _max_diff(ts(*inputs), ref)})

    if "onnx" not in skip:
        try:
            import onnxruntime as ort
        except ImportError:
            rows.append({"backend": "onnxruntime", "skipped": "onnxruntime is not installed"})
        else:
            t0 = time.perf_counter()
            buf = io.BytesIO()
            with torch.no_grad():
                torch.onnx.export(wrapped, inputs, buf, opset_version=17, input_names=names,
                                  output_names=["eps", "label"], dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
            feed = {n: a.numpy() for n, a in zip(names, inputs)}
            sess.run(None, feed)
            prep = time.perf_counter() - t0
            rows.append({"backend": "onnxruntime", "version": ort.__version__,
                         "s_per_batch": _time(lambda: sess.run(None, feed), args.repeat), "prep_s": prep,
                         "max_abs_diff": _max_diff(tuple(sess.run(None, feed)), ref)})

    if "compile" not in skip:
        t0 = time.perf_counter()
        comp = torch.compile(wrapped)
        with torch.inference_mode():
            inputs_cl = _channels_last(inputs)
            comp(*inputs_cl)
            prep = time.perf_counter() - t0
            rows.append({"backend": "torch_compile", "s_per_batch": _time(lambda: comp(*inputs_cl), args.repeat),
                         "prep_s": prep, "max_abs_diff": _max_diff(comp(*inputs_cl), ref)})

    for r in rows:
        if "s_per_batch" in r:
            r["speedup_vs_pipeline"] = s_ref / r["s_per_batch"]
    res = {"machine": machine_description(), "threads": args.threads, "batch": args.batch,
           "size": args.size, "repeat": args.repeat, "rows": rows}
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
