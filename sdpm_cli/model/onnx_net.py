"""The network without torch: a checkpoint's ONNX companion, for every mode on the CPU.

Importing torch is about 1.8 s of a fresh process on 2 cores (BENCHMARKS.md "`out` without torch"),
more than a 5 mm study's whole `out` network. A checkpoint may therefore carry two graphs traced from
it by `export_graphs`: `<name>.net.onnx`, the network with both heads ((x_t, t[, cond]) -> (eps,
y_t_hat)), and `<name>.eps.onnx`, the noise head alone (what the infer chain calls after its first
step; ONNX Runtime computes every output of a graph whichever are asked for). Each carries the
checkpoint's header and the sha256 of the checkpoint file's bytes. `load_graphs` opens them with ONNX
Runtime only when both belong to this very file; a missing or stale companion (a checkpoint retrained
or its header rewritten since), or no onnxruntime, leaves the network on torch: the same answer
within float rounding, a slower start. The samplers around the calls are the same numpy code
either way (`model.samplers`, `model.runtime`).
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
from sdpm_cli.model.runtime import OnnxNetwork

ROLES = {"net": ("eps", "y"), "eps": ("eps",)}  # graph role -> its outputs
GRAPH_FORMAT = "sdpm-net-graph/1"
_META_FORMAT = "sdpm.format"
_META_ROLE = "sdpm.role"
_META_SHA = "sdpm.checkpoint_sha256"
_META_HEADER = "sdpm.header"
OPSET = 17


def companion_paths(checkpoint: str | Path) -> dict[str, Path]:
    """Where a checkpoint's graphs live: `models/sdpm-default.pt` -> `models/sdpm-default.net.onnx`
    and `models/sdpm-default.eps.onnx`."""
    p = Path(checkpoint)
    return {role: p.with_name(f"{p.stem}.{role}.onnx") for role in ROLES}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Graphs:
    """An opened companion: the network as a `samplers.Network`, with the checkpoint's header."""

    network: OnnxNetwork
    header: dict  # the checkpoint's header, exactly as stored in it
    paths: dict

    @property
    def cond_channels(self) -> int:
        return self.network.cond_channels


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not results
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_graphs(checkpoint: str | Path, threads: int = 0) -> tuple[Optional[Graphs], str]:
    """(graphs, "") when `checkpoint` has both graphs, made from exactly this file, and onnxruntime is
    installed; else (None, why not) - the caller runs the network on torch."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():  # the torch loader gives the user the reason
        return None, f"{checkpoint.name} is not a file"
    paths = companion_paths(checkpoint)
    for path in paths.values():
        if not path.is_file():
            return None, f"no {path.name} beside the checkpoint"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed"
    sha = file_sha256(checkpoint)
    sessions, header = {}, None
    for role, path in paths.items():
        try:
            session = _session(path, threads)
            meta = session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # noqa: BLE001 - an unreadable companion only costs speed
            return None, f"{path.name} could not be opened ({type(exc).__name__})"
        if meta.get(_META_FORMAT) != GRAPH_FORMAT or meta.get(_META_ROLE) != role:
            return None, f"{path.name} is not an sdpm {role} graph of format {GRAPH_FORMAT}"
        if meta.get(_META_SHA) != sha:
            return None, f"{path.name} was made from another version of {checkpoint.name} (re-run `sdpm export-onnx`)"
        try:
            header = json.loads(meta[_META_HEADER])
        except (KeyError, ValueError):
            return None, f"{path.name} carries no readable header"
        cond_channels = int(header.get("architecture", {}).get("cond_channels", 0) or 0)
        names = [i.name for i in session.get_inputs()]
        if names != (["x", "t", "cond"] if cond_channels else ["x", "t"]):
            return None, f"{path.name} has inputs {names}, not those of its checkpoint's network"
        sessions[role] = session
    network = OnnxNetwork(full=sessions["net"], eps_only=sessions["eps"], cond_channels=cond_channels)
    return Graphs(network=network, header=header, paths=paths), ""


def export_graphs(checkpoint: str | Path, force: bool = False) -> dict[str, Path]:
    """Write the ONNX companion beside a checkpoint (needs torch and the `onnx` package); returns its
    paths. Free batch size and slice size; each graph is checked against torch on random slices of
    another size, batch and step than it was traced with before it is kept (neither is, if one fails).
    """
    import torch

    from sdpm_cli.model.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    targets = companion_paths(checkpoint)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError("exporting needs the onnx package (pip install 'sdpm[export]')") from None
    for path in targets.values():
        if path.exists() and not force:
            raise UsageError(f"{path} exists (use --force to overwrite)")
    net, header = load_checkpoint(checkpoint)
    net = net.eval()
    k = net.cfg.cond_channels

    class Call(torch.nn.Module):
        def __init__(self, need_label: bool):
            super().__init__()
            self.net, self.need_label = net, need_label

        def forward(self, x, t, cond=None):
            eps, y = self.net(x, t, need_label=self.need_label, cond=cond)
            return (eps, y) if self.need_label else eps

    side = 64
    x = torch.rand(2, 1, side, side) * 2 - 1
    t = torch.tensor([0, 7])
    args = (x, t) if k == 0 else (x, t, torch.rand(2, k, side, side) * 2 - 1)
    names = ["x", "t"] if k == 0 else ["x", "t", "cond"]
    sha = file_sha256(checkpoint)
    written: list[Path] = []
    try:
        for role, outputs in ROLES.items():
            _export_one(Call(role == "net").eval(), args, names, outputs, role, sha, header, targets[role], force, k)
            written.append(targets[role])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return targets


def _export_one(call, args, names, outputs, role, sha, header, target, force, cond_channels) -> None:
    """Trace one graph into `target` (atomically), stamp its metadata, check it against torch."""
    import onnx
    import torch

    from sdpm_cli.outputs.atomic import atomic_path

    dynamic = {n: ({0: "batch"} if n == "t" else {0: "batch", 2: "height", 3: "width"}) for n in names + list(outputs)}
    with atomic_path(target, force=force) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent branches and constant folding
        torch.onnx.export(call, args, str(tmp), input_names=names, output_names=list(outputs), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
        model = onnx.load(str(tmp))
        for key, value in ((_META_FORMAT, GRAPH_FORMAT), (_META_ROLE, role), (_META_SHA, sha),
                           (_META_HEADER, json.dumps(header, sort_keys=True))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        _check_against_torch(tmp, call, cond_channels, outputs)


def _check_against_torch(path: Path, call, cond_channels: int, outputs: tuple[str, ...]) -> None:
    """A graph must give torch's outputs on slices of another size, batch and step than it was traced with."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 96, 80, generator=gen) * 2 - 1
    t = torch.tensor([0, 24, 311])
    cond = None if cond_channels == 0 else torch.rand(3, cond_channels, 96, 80, generator=gen) * 2 - 1
    with torch.no_grad():
        want = call(x, t, cond)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    feed = {"x": x.numpy(), "t": t.numpy()} | ({} if cond is None else {"cond": cond.numpy()})
    got = _session(path, 0).run(list(outputs), feed)
    err = max(float(np.abs(g - w).max()) if g.shape == w.shape else float("inf") for g, w in zip(got, want))
    if err > 1e-4:
        raise ModelError(f"the exported graph {path.name} differs from the checkpoint's network (max difference {err:.2g})")
