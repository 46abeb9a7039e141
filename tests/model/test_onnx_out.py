"""`out` through a checkpoint's ONNX companion (model.onnx_out): the same answer as torch, never a
stale graph, and no torch import on the way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import UsageError
from sdpm_cli.model.onnx_out import companion_path, export_out, load_out_graph
from sdpm_cli.model.registry import default_model_path
from sdpm_cli.pipeline import load_model, segment_study

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo_study"


@pytest.fixture(scope="module")
def tiny_pair(tiny_model, tmp_path_factory) -> Path:
    """A copy of the tiny test checkpoint with its companion exported beside it."""
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("tiny_onnx")
    ckpt = d / "tiny.pt"
    shutil.copy(tiny_model, ckpt)
    assert export_out(ckpt) == companion_path(ckpt) == d / "tiny.out.onnx"
    return ckpt


def test_shipped_companion_belongs_to_the_shipped_checkpoint():
    from sdpm_cli.model.checkpoint import load_checkpoint

    ckpt = default_model_path()
    graph, why = load_out_graph(ckpt)
    assert graph is not None, why  # a release that changes the weights or header must re-export it
    _, header = load_checkpoint(ckpt)
    import json

    assert graph.header == json.loads(json.dumps(header))


def test_graph_gives_torch_probabilities(tiny_pair):
    import torch

    from sdpm_cli.model.samplers import predict_out

    graph, why = load_out_graph(tiny_pair)
    assert graph is not None, why
    lm, _ = load_model(tiny_pair, "cpu")
    x = torch.rand(5, 1, 72, 88, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        want = predict_out(lm.net, lm.sched, x)[0].numpy()
    for pixels in (72 * 88, 4 * 72 * 88, 10**9):  # one slice per call, a few, all at once
        got = graph.prob(x.numpy(), cpu_pixels=pixels)
        assert got.shape == want.shape == (5, 2, 72, 88)
        assert np.abs(got - want).max() < 1e-4


def test_stale_or_missing_companion_is_not_used(tiny_pair, tmp_path):
    from sdpm_cli.model.checkpoint import update_header

    ckpt = tmp_path / "m.pt"
    shutil.copy(tiny_pair, ckpt)
    graph, why = load_out_graph(ckpt)
    assert graph is None and "no m.out.onnx" in why
    shutil.copy(companion_path(tiny_pair), companion_path(ckpt))
    assert load_out_graph(ckpt)[0] is not None  # same bytes, renamed: still its companion
    update_header(ckpt, {"name": "rewritten"})  # e.g. a lesion filter chosen on validation
    graph, why = load_out_graph(ckpt)
    assert graph is None and "another version" in why
    lm, _ = load_model(ckpt, "cpu", out_graph=True)
    assert lm.out_graph is None and lm.net is not None and lm.header["name"] == "rewritten"


def test_export_refuses_to_overwrite_without_force(tiny_pair):
    with pytest.raises(UsageError):
        export_out(tiny_pair)
    assert export_out(tiny_pair, force=True).is_file()


def test_segment_through_graph_matches_torch_and_loads_torch_only_when_needed(tiny_pair, studies):
    lm, _ = load_model(tiny_pair, "cpu", out_graph=True)
    assert lm.out_graph is not None and lm.net is None
    ref, _ = load_model(tiny_pair, "cpu")
    a = segment_study(studies["study0"], model=lm, mode="out")
    b = segment_study(studies["study0"], model=ref, mode="out")
    assert lm.net is None and a.n_calls_per_slice == b.n_calls_per_slice == 1
    pa, pb = a.probs._m, b.probs._m
    # torch itself moves these probabilities by ~5e-4 between its memory layouts or batch sizes
    assert np.abs(pa - pb).max() < 1e-3
    la, lb = sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels)
    # labels may differ only where a probability lies within float rounding of the threshold
    assert int((la != lb).sum()) <= max(5, int(1e-4 * la.size))
    assert a.network_runtime == "onnxruntime" and b.network_runtime == "torch"
    # a stochastic mode on the same LoadedModel loads the torch network when a slice needs it
    u = segment_study(studies["study0"], model=lm, mode="salient", gating=False)
    assert lm.net is not None and u.network_runtime == "torch"
    g = segment_study(studies["study0"], model=lm, mode="union")  # gated: `out`'s pass on the graph
    assert g.network_runtime == ("onnxruntime+torch" if g.stochastic_slices else "onnxruntime")
    # the union's `out` part is the `out` run's, voxel for voxel (both through the graph)
    assert np.array_equal(sitk.GetArrayFromImage(g.labels_by_mode["out"]), la)


@pytest.mark.skipif(not DEMO.is_dir(), reason="examples/demo_study not in this checkout")
def test_shipped_out_on_cpu_never_imports_torch_and_matches_torch(tmp_path):
    """A fresh `sdpm segment --mode out` process on the CPU: no torch import, the torch run's mask."""
    code = (
        "import sys\n"
        "from sdpm_cli.cli import main\n"
        f"sys.argv = ['sdpm', 'segment', {str(DEMO)!r}, '--mode', 'out', '--device', 'cpu', '--out', "
        f"{str(tmp_path / 'onnx.nii.gz')!r}, '-q', '--threads', '2']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, timeout=300)
    ref, _ = load_model(None, "cpu")
    b = segment_study(DEMO, model=ref, mode="out")
    a = sitk.ReadImage(str(tmp_path / "onnx.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b.labels))
