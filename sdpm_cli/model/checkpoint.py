"""Checkpoints: weights plus a JSON header, loaded without ever executing pickled code.

File = torch.save({"header_json": str, "state_dict": {name: tensor}}), read back with
torch.load(weights_only=True), which refuses any pickled object other than tensors and plain
containers. The header says what the weights are (architecture, schedule, classes, preprocessing,
training data and steps, versions) and carries the sha256 of the weights, checked at load, so a
truncated, corrupt, foreign or tampered file is refused with one line (ModelError, exit 4).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from sdpm_cli import __version__
from sdpm_cli.errors import ModelError
from sdpm_cli.labels import CLASSES
from sdpm_cli.model.network import NetConfig, SDPMNet
from sdpm_cli.outputs.atomic import atomic_path

FORMAT = "sdpm-checkpoint"
FORMAT_VERSION = 1


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path, net: SDPMNet, header: dict[str, Any] | None = None, force: bool = False) -> Path:
    """Write weights + header atomically (never a partial file; no overwrite without force)."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    head: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sdpm_version": __version__,
        "classes": {str(k): v for k, v in CLASSES.items()},
        "schedule": {"T": 500},
        "preprocess": {},
        "training": {},
    }
    head.update(header or {})
    head["architecture"] = net.cfg.to_dict()
    head["format"], head["format_version"] = FORMAT, FORMAT_VERSION
    head["sha256"] = weights_sha256(state)
    try:
        header_json = json.dumps(head, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint header is not JSON-serialisable: {exc}") from None
    with atomic_path(path, force) as tmp:
        torch.save({"header_json": header_json, "state_dict": state}, tmp)
    return Path(path)


def read_header(path) -> dict[str, Any]:
    """The header alone (still a safe, full load: the file is small)."""
    return _read(Path(path), "cpu")[0]


def _read(path: Path, map_location) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    name = path.name
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses globals it does not know: code, custom classes, foreign pickles
        raise ModelError(
            f"{name} contains pickled objects other than weights (refused without running them): not an sdpm checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{name} is not a readable checkpoint (corrupt or truncated?): {first}") from None
    if not isinstance(obj, dict) or "header_json" not in obj or "state_dict" not in obj:
        raise ModelError(f"{name} is not an sdpm checkpoint (no header and weights)")
    try:
        header = json.loads(obj["header_json"])
    except (TypeError, ValueError):
        raise ModelError(f"{name} has an unreadable checkpoint header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelError(f"{name} is not an sdpm checkpoint (format {header.get('format')!r})"
                         if isinstance(header, dict) else f"{name} is not an sdpm checkpoint")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(f"{name} uses checkpoint format {version!r}; this sdpm reads up to {FORMAT_VERSION} (upgrade sdpm)")
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{name} has no weight tensors")
    if weights_sha256(state) != header.get("sha256"):
        raise ModelError(f"{name} failed its integrity check (weights sha256 does not match the header)")
    return header, state


def load_checkpoint(path, map_location="cpu") -> tuple[SDPMNet, dict[str, Any]]:
    """(network in eval mode, header); any problem with the file raises ModelError (exit 4)."""
    path = Path(path)
    header, state = _read(path, map_location)
    try:
        cfg = NetConfig.from_dict(header["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path.name} has an unusable architecture in its header: {exc}") from None
    net = SDPMNet(cfg)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise ModelError(f"{path.name}: weights do not match the architecture in its header ({detail[:200]})") from None
    return net.eval(), header


def update_header(path, updates: dict[str, Any], out=None, force: bool = False) -> Path:
    """Rewrite a checkpoint with some header fields replaced (e.g. `postprocess` chosen on validation).

    The weights, and so their sha256, are unchanged; the architecture, format and digest are never
    taken from `updates`.
    """
    net, header = load_checkpoint(path)
    fixed = {"architecture", "format", "format_version", "sha256"}
    header.update({k: v for k, v in updates.items() if k not in fixed})
    same_file = out is None or Path(out).resolve() == Path(path).resolve()
    return save_checkpoint(path if out is None else out, net, header, force=force or same_file)


def average_checkpoints(paths, out, header: dict[str, Any] | None = None, force: bool = False) -> Path:
    """Write the weight average of checkpoints of one architecture (a "model soup") to `out`.

    Every floating-point tensor is the arithmetic mean of the inputs' (summed in input order, then
    divided: the same bytes as `torch.stack(...).mean(0)`); other tensors are taken from the first.
    The header is the first input's with `header` applied and `averaged_from` naming the inputs'
    digests (the candidate p3avg of 2026-12-07 was made so; model card).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ModelError("averaging needs at least two checkpoints")
    net, first = load_checkpoint(paths[0])
    states = [net.state_dict()]
    digests = [first["sha256"]]
    for p in paths[1:]:
        other, h = load_checkpoint(p)
        if h["architecture"] != first["architecture"]:
            raise ModelError(f"{p.name} has another architecture than {paths[0].name}: weights cannot be averaged")
        states.append(other.state_dict())
        digests.append(h["sha256"])
    avg = {}
    for name, t in states[0].items():
        if t.is_floating_point():
            acc = t.detach().clone()
            for s in states[1:]:
                acc = acc + s[name]
            avg[name] = acc / len(states)
        else:
            avg[name] = t
    net.load_state_dict(avg, strict=True)
    return save_checkpoint(out, net, {**first, "averaged_from": digests, **(header or {})}, force=force)
