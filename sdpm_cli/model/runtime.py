"""Who computes a network call: the checkpoint's torch module, or its ONNX graphs on ONNX Runtime.

Both are a `samplers.Network` (numpy in, numpy out), so the samplers - every mode, preset and
gating - are one numpy implementation whatever runs the convolutions. torch runs on any device
and precision (CUDA, bf16 autocast); ONNX Runtime runs fp32 on the CPU without importing torch,
which is 1.8-2 s of a fresh process on 2 cores (BENCHMARKS.md "`out` without torch").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class TorchNetwork:
    """The checkpoint's torch module on its device; bf16 under autocast, outputs back as float32."""

    net: object  # torch.nn.Module in eval mode
    device: object = "cpu"  # torch.device or its name
    precision: str = "fp32"
    name = "torch"

    @property
    def cpu(self) -> bool:
        return getattr(self.device, "type", str(self.device)) == "cpu"

    def __call__(self, x: np.ndarray, t: np.ndarray, need_label: bool, cond: Optional[np.ndarray] = None):
        import torch

        dev = torch.device(self.device) if isinstance(self.device, str) else self.device
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        tt = torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64)).to(dev)
        kw = {} if cond is None else {"cond": torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)).to(dev)}
        with torch.no_grad(), _autocast(self.precision, dev):
            eps, y = self.net(xt, tt, need_label=need_label, **kw)
        # under bf16 autocast the network runs in bf16; the diffusion maths stays in float32
        return eps.float().cpu().numpy(), (None if y is None else y.float().cpu().numpy())


def _autocast(precision: str, device):
    """fp32 as trained, or bf16 autocast (AMX on recent Intel CPUs, tensor cores on GPUs; about 2x
    faster on this project's CPU). Masks change by a few boundary voxels (BENCHMARKS.md "bf16")."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class OnnxNetwork:
    """The checkpoint's ONNX companion (`model.onnx_net`): one session with both heads, one with the
    noise head only (the infer chain's calls after its first; 12.4 against 19.0 ms per 160 x 160
    image on 2 cores - ONNX Runtime computes every output of a graph whichever are asked for)."""

    full: object  # onnxruntime.InferenceSession: (x, t[, cond]) -> (eps, y)
    eps_only: object  # onnxruntime.InferenceSession: (x, t[, cond]) -> eps
    cond_channels: int = 0
    cpu = True
    name = "onnxruntime"

    def __call__(self, x: np.ndarray, t: np.ndarray, need_label: bool, cond: Optional[np.ndarray] = None):
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"this network takes {self.cond_channels} conditioning channel(s)")
        feed = {"x": np.ascontiguousarray(x, dtype=np.float32), "t": np.ascontiguousarray(t, dtype=np.int64)}
        if cond is not None:
            feed["cond"] = np.ascontiguousarray(cond, dtype=np.float32)
        if need_label:
            eps, y = self.full.run(["eps", "y"], feed)
            return eps, y
        return self.eps_only.run(["eps"], feed)[0], None
