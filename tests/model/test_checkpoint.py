"""Checkpoint round trip and every refusal, including a pickle that would run code."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from sdpm_cli.errors import EXIT_MODEL, ModelError, UsageError
from sdpm_cli.model.checkpoint import FORMAT, load_checkpoint, read_header, save_checkpoint, weights_sha256
from sdpm_cli.model.network import NetConfig, SDPMNet

TINY = NetConfig(widths=(8, 16), decoder_widths=(8, 8), time_dim=16, groups=4)


def _net(seed=0):
    torch.manual_seed(seed)
    return SDPMNet(TINY).eval()


def _save(tmp_path, name="m.pt", **header):
    p = tmp_path / name
    save_checkpoint(p, _net(), {"preprocess": {"size": 160}, "training": {"steps": 12, "data": "synth"}, **header})
    return p


def test_round_trip_restores_weights_and_header(tmp_path):
    net = _net()
    p = tmp_path / "m.pt"
    save_checkpoint(p, net, {"schedule": {"T": 300}, "preprocess": {"size": 160}, "training": {"steps": 5}, "name": "t"})
    net2, h = load_checkpoint(p)
    assert h["format"] == FORMAT and h["format_version"] == 1 and h["sdpm_version"]
    assert h["architecture"] == TINY.to_dict() and h["schedule"] == {"T": 300} and h["name"] == "t"
    assert h["classes"] == {"1": "infarct", "2": "hemorrhage"} and h["training"] == {"steps": 5}
    assert h["sha256"] == weights_sha256(net.state_dict()) and not net2.training
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([3])
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(net(x, t), net2(x, t)))
    assert read_header(p) == h


def test_no_overwrite_without_force_and_no_leftovers(tmp_path):
    p = _save(tmp_path)
    with pytest.raises(UsageError, match="exists"):
        save_checkpoint(p, _net())
    save_checkpoint(p, _net(1), force=True)
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]


class _Boom:
    """Unpickling this would create the marker file (stands in for arbitrary code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_booby_trapped_pickle_is_refused_and_never_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    payload = {"header_json": json.dumps({"format": FORMAT}), "state_dict": {}, "x": _Boom(str(marker))}
    if container == "zip":
        torch.save(payload, p)
    else:
        p.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelError, match="refused without running them") as ei:
        load_checkpoint(p)
    assert not marker.exists()
    assert ei.value.exit_code == EXIT_MODEL and "\n" not in str(ei.value)
    # sanity: the trap is real (plain pickle would have run it)
    pickle.loads(pickle.dumps(_Boom(str(marker))))
    assert marker.exists()


def test_missing_directory_and_non_checkpoint_files(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ModelError, match="not a file"):
        load_checkpoint(tmp_path)
    txt = tmp_path / "notes.pt"
    txt.write_text("hello, I am not a model\n")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(txt)
    plain = tmp_path / "plain.pt"
    torch.save(_net().state_dict(), plain)  # weights without our header
    with pytest.raises(ModelError, match="not an sdpm checkpoint"):
        load_checkpoint(plain)


def test_truncated_file(tmp_path):
    p = _save(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_checkpoint(p)


def _rewrite(p: Path, edit):
    obj = torch.load(p, weights_only=True)
    edit(obj)
    torch.save(obj, p)


def test_tampered_weights_fail_the_sha256(tmp_path):
    p = _save(tmp_path)
    _rewrite(p, lambda o: o["state_dict"]["encoder.stem.bias"].add_(1e-3))
    with pytest.raises(ModelError, match="integrity check"):
        load_checkpoint(p)


def test_wrong_format_and_newer_version(tmp_path):
    p = _save(tmp_path)

    def fmt(o):
        h = json.loads(o["header_json"])
        h["format"] = "someone-elses-model"
        o["header_json"] = json.dumps(h)

    _rewrite(p, fmt)
    with pytest.raises(ModelError, match="not an sdpm checkpoint .format 'someone-elses-model'"):
        load_checkpoint(p)
    p = _save(tmp_path, "v.pt")

    def ver(o):
        h = json.loads(o["header_json"])
        h["format_version"] = 99
        o["header_json"] = json.dumps(h)

    _rewrite(p, ver)
    with pytest.raises(ModelError, match="upgrade sdpm"):
        load_checkpoint(p)


def test_weights_not_matching_the_architecture(tmp_path):
    p = _save(tmp_path)

    def arch(o):  # a header that claims a wider network than the weights
        h = json.loads(o["header_json"])
        h["architecture"]["widths"] = [8, 32]
        o["header_json"] = json.dumps(h)

    _rewrite(p, arch)
    with pytest.raises(ModelError, match="do not match the architecture"):
        load_checkpoint(p)
    p = _save(tmp_path, "u.pt")

    def unknown(o):
        h = json.loads(o["header_json"])
        h["architecture"]["transformer_layers"] = 12
        o["header_json"] = json.dumps(h)

    _rewrite(p, unknown)
    with pytest.raises(ModelError, match="unusable architecture"):
        load_checkpoint(p)


def test_average_checkpoints_is_the_mean_of_every_weight(tmp_path):
    from sdpm_cli.model.checkpoint import average_checkpoints

    paths = []
    for seed in (0, 1, 2):
        p = tmp_path / f"m{seed}.pt"
        save_checkpoint(p, _net(seed), {"name": f"m{seed}", "preprocess": {"size": 160}})
        paths.append(p)
    out = average_checkpoints(paths[:2], tmp_path / "avg.pt", {"name": "soup"})
    net, head = load_checkpoint(out)
    a, b = _net(0).state_dict(), _net(1).state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(v, (a[k] + b[k]) / 2), k
    assert head["name"] == "soup" and head["preprocess"] == {"size": 160}
    assert head["averaged_from"] == [read_header(paths[0])["sha256"], read_header(paths[1])["sha256"]]
    three, _ = load_checkpoint(average_checkpoints(paths, tmp_path / "avg3.pt"))
    c = _net(2).state_dict()
    k = next(iter(c))
    assert torch.allclose(three.state_dict()[k], (a[k] + b[k] + c[k]) / 3)
    # one checkpoint with itself is itself, bit for bit
    same, _ = load_checkpoint(average_checkpoints([paths[0], paths[0]], tmp_path / "same.pt"))
    assert weights_sha256(same.state_dict()) == read_header(paths[0])["sha256"]


def test_average_checkpoints_refuses_what_cannot_be_averaged(tmp_path):
    from sdpm_cli.model.checkpoint import average_checkpoints

    p0 = _save(tmp_path, "a.pt")
    other = tmp_path / "wide.pt"
    save_checkpoint(other, SDPMNet(NetConfig(widths=(8, 24), decoder_widths=(8, 8), time_dim=16, groups=4)))
    with pytest.raises(ModelError, match="another architecture"):
        average_checkpoints([p0, other], tmp_path / "x.pt")
    with pytest.raises(ModelError, match="at least two"):
        average_checkpoints([p0], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    average_checkpoints([p0, p0], tmp_path / "y.pt")
    with pytest.raises(UsageError, match="output exists"):
        average_checkpoints([p0, p0], tmp_path / "y.pt")  # no overwrite without force
    average_checkpoints([p0, p0], tmp_path / "y.pt", force=True)
