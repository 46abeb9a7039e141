"""`out` without torch: the network's one call on the clean image, as an ONNX graph beside the checkpoint.

`out` is a single deterministic network call per slice at step 0, then the x0-prediction and the
clamp to a probability (`samplers.predict_out`). Importing torch is about 1.8 s of a 4.5-5 s `out`
run on 2 cores (BENCHMARKS.md "`out` without torch"), more than the network itself, so a checkpoint
may carry a companion `<name>.out.onnx`: exactly that computation, traced from the checkpoint by
`export_out`, with the checkpoint's header and the sha256 of the checkpoint file's bytes in its
metadata. `load_out_graph` opens it with ONNX Runtime only when it belongs to this very file; a
missing or stale companion (a checkpoint retrained or its header rewritten since), or no
onnxruntime, leaves `out` on torch: the same answer within float rounding, a slower start.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sdpm_cli.errors import ModelError, UsageError
from sdpm_cli.model.inference import cpu_call_rows

COMPANION_SUFFIX = ".out.onnx"
GRAPH_FORMAT = "sdpm-out-graph/1"
_META_FORMAT = "sdpm.format"
_META_SHA = "sdpm.checkpoint_sha256"
_META_HEADER = "sdpm.header"
OPSET = 17


def companion_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's ONNX companion lives: `models/sdpm-default.pt` -> `models/sdpm-default.out.onnx`."""
    p = Path(checkpoint)
    return p.with_name(p.stem + COMPANION_SUFFIX)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class OutGraph:
    """An opened companion: `prob(x)` is `samplers.predict_out(net, sched, x)[0]` as numpy."""

    session: object  # onnxruntime.InferenceSession
    header: dict  # the checkpoint's header, exactly as stored in it
    path: Path
    cond_channels: int

    def prob(self, x: np.ndarray, cond: Optional[np.ndarray] = None, cpu_pixels: int = 4 * 160 * 160) -> np.ndarray:
        """Class probabilities [B, C, H, W] (float32) of clean slices x [B, 1, H, W] in [-1, 1]."""
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"this graph takes {self.cond_channels} conditioning channel(s)")
        rows = cpu_call_rows(x.shape[-2], x.shape[-1], cpu_pixels)
        parts = []
        for i in range(0, x.shape[0], rows):
            feed = {"x": np.ascontiguousarray(x[i:i + rows], dtype=np.float32)}
            if cond is not None:
                feed["cond"] = np.ascontiguousarray(cond[i:i + rows], dtype=np.float32)
            parts.append(self.session.run(["prob"], feed)[0])
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def load_out_graph(checkpoint: str | Path, threads: int = 0) -> tuple[Optional[OutGraph], str]:
    """(graph, "") when `checkpoint` has a companion made from exactly this file and onnxruntime is
    installed; else (None, why not) - the caller runs `out` on torch."""
    checkpoint = Path(checkpoint)
    path = companion_path(checkpoint)
    if not checkpoint.is_file():  # the torch loader gives the user the reason
        return None, f"{checkpoint.name} is not a file"
    if not path.is_file():
        return None, f"no {path.name} beside the checkpoint"
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed"
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not results
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
    except Exception as exc:  # noqa: BLE001 - an unreadable companion only costs speed
        return None, f"{path.name} could not be opened ({type(exc).__name__})"
    if meta.get(_META_FORMAT) != GRAPH_FORMAT:
        return None, f"{path.name} is not an sdpm out graph of format {GRAPH_FORMAT}"
    if meta.get(_META_SHA) != file_sha256(checkpoint):
        return None, f"{path.name} was made from another version of {checkpoint.name} (re-run `sdpm export-onnx`)"
    try:
        header = json.loads(meta[_META_HEADER])
    except (KeyError, ValueError):
        return None, f"{path.name} carries no readable header"
    names = [i.name for i in session.get_inputs()]
    cond_channels = int(header.get("architecture", {}).get("cond_channels", 0) or 0)
    if names != (["x", "cond"] if cond_channels else ["x"]):
        return None, f"{path.name} has inputs {names}, not those of its checkpoint's network"
    return OutGraph(session=session, header=header, path=path, cond_channels=cond_channels), ""


def export_out(checkpoint: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the ONNX companion of a checkpoint (needs torch and the `onnx` package); returns its path.

    The graph is `samplers.predict_out` on one batch of slices (step 0, both heads, x0-prediction,
    clamp) with a free batch size and slice size; it is checked against torch on random slices before
    it is kept.
    """
    import torch

    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.model.diffusion import sigmoid_schedule
    from sdpm_cli.model.samplers import predict_out
    from sdpm_cli.outputs.atomic import atomic_path

    checkpoint = Path(checkpoint)
    target = Path(out) if out is not None else companion_path(checkpoint)
    try:
        import onnx
    except ImportError:
        raise UsageError("exporting needs the onnx package (pip install 'sdpm[export]')") from None
    net, header = load_checkpoint(checkpoint)
    sched = sigmoid_schedule(int(header.get("schedule", {}).get("T", 500)))
    k = net.cfg.cond_channels

    class OutCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, cond=None):
            # one call for the whole batch (the graph chunks nothing; OutGraph.prob does)
            return predict_out(self.net, sched, x, cond, cpu_pixels=1 << 62)[0]

    call = OutCall().eval()
    side = 64
    x = torch.rand(2, 1, side, side) * 2 - 1
    args = (x,) if k == 0 else (x, torch.rand(2, k, side, side) * 2 - 1)
    names = ["x"] if k == 0 else ["x", "cond"]
    dynamic = {n: {0: "batch", 2: "height", 3: "width"} for n in names + ["prob"]}
    with atomic_path(target, force=force) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the exporter's notes on constant folding
        torch.onnx.export(call, args, str(tmp), input_names=names, output_names=["prob"], dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
        model = onnx.load(str(tmp))
        for key, value in ((_META_FORMAT, GRAPH_FORMAT), (_META_SHA, file_sha256(checkpoint)),
                           (_META_HEADER, json.dumps(header, sort_keys=True))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        _check_against_torch(tmp, call, k)
    return target


def _check_against_torch(path: Path, call, cond_channels: int) -> None:
    """The graph must give torch's probabilities on slices of another size and batch than it was traced with."""
    import onnxruntime as ort
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 96, 80, generator=gen) * 2 - 1
    cond = None if cond_channels == 0 else torch.rand(3, cond_channels, 96, 80, generator=gen) * 2 - 1
    with torch.no_grad():
        want = call(x, cond).numpy()
    feed = {"x": x.numpy()} | ({} if cond is None else {"cond": cond.numpy()})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["prob"], feed)[0]
    err = float(np.abs(got - want).max())
    if got.shape != want.shape or err > 1e-4:
        raise ModelError(f"the exported graph differs from the checkpoint's network (max |dp| {err:.2g})")
