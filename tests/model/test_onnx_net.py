"""The network through a checkpoint's ONNX companion (model.onnx_net): the same answer as torch in every
mode, never a stale graph, and no torch import on the way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import UsageError
from sdpm_cli.model.onnx_net import companion_paths, export_graphs, load_graphs
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
    paths = export_graphs(ckpt)
    assert paths == companion_paths(ckpt) == {"net": d / "tiny.net.onnx", "eps": d / "tiny.eps.onnx"}
    return ckpt


def test_shipped_companion_belongs_to_the_shipped_checkpoint():
    import json

    from sdpm_cli.model.checkpoint import load_checkpoint

    ckpt = default_model_path()
    graphs, why = load_graphs(ckpt)
    assert graphs is not None, why  # a release that changes the weights or header must re-export it
    _, header = load_checkpoint(ckpt)
    assert graphs.header == json.loads(json.dumps(header))


def test_graphs_give_torch_outputs_at_any_step_batch_and_size(tiny_pair):
    from sdpm_cli.model.runtime import TorchNetwork

    graphs, why = load_graphs(tiny_pair)
    assert graphs is not None, why
    lm, _ = load_model(tiny_pair, "cpu")
    torch_net = TorchNetwork(lm.net)
    g = np.random.default_rng(1)
    x = (g.random((5, 1, 72, 88)) * 2 - 1).astype(np.float32)
    t = np.array([0, 3, 24, 61, 311])
    eps_t, y_t = torch_net(x, t, True)
    eps_g, y_g = graphs.network(x, t, True)
    assert eps_g.shape == eps_t.shape == (5, 1, 72, 88) and y_g.shape == y_t.shape == (5, 2, 72, 88)
    assert np.abs(eps_g - eps_t).max() < 1e-4 and np.abs(y_g - y_t).max() < 1e-4
    eps_only, none = graphs.network(x[:2], t[:2], False)  # the noise-head graph
    assert none is None and np.abs(eps_only - eps_t[:2]).max() < 1e-4


def test_every_mode_through_the_graphs_matches_torch(tiny_pair):
    """The samplers are the same numpy code around either runtime: with the same noise, every mode's
    probabilities agree to float rounding."""
    from sdpm_cli.model.noise import SliceNoise
    from sdpm_cli.model.runtime import TorchNetwork
    from sdpm_cli.model.samplers import make_config, predict

    graphs, _ = load_graphs(tiny_pair)
    lm, _ = load_model(tiny_pair, "cpu")
    x = (np.random.default_rng(2).random((3, 1, 48, 40)) * 2 - 1).astype(np.float32)
    cfg = make_config("union", "fast", cleanup=False)
    noise = lambda: {"salient": SliceNoise([1, 2, 3]), "infer": SliceNoise([4, 5, 6])}  # noqa: E731
    a = predict(graphs.network, lm.sched, x, cfg, noise())
    b = predict(TorchNetwork(lm.net), lm.sched, x, cfg, noise())
    for m in ("out", "salient", "infer", "union"):
        assert np.abs(a.probs[m] - b.probs[m]).max() < 1e-3, m


def test_stale_or_missing_companion_is_not_used(tiny_pair, tmp_path):
    from sdpm_cli.model.checkpoint import update_header

    ckpt = tmp_path / "m.pt"
    shutil.copy(tiny_pair, ckpt)
    graphs, why = load_graphs(ckpt)
    assert graphs is None and "no m.net.onnx" in why
    for role, path in companion_paths(tiny_pair).items():
        shutil.copy(path, companion_paths(ckpt)[role])
    assert load_graphs(ckpt)[0] is not None  # same bytes, renamed: still its companion
    companion_paths(ckpt)["eps"].unlink()
    assert "no m.eps.onnx" in load_graphs(ckpt)[1]  # both graphs or neither
    shutil.copy(companion_paths(tiny_pair)["eps"], companion_paths(ckpt)["eps"])
    update_header(ckpt, {"name": "rewritten"})  # e.g. a lesion filter chosen on validation
    graphs, why = load_graphs(ckpt)
    assert graphs is None and "another version" in why
    lm, _ = load_model(ckpt, "cpu", graphs=True)
    assert lm.graphs is None and lm.net is not None and lm.header["name"] == "rewritten"


def test_export_refuses_to_overwrite_without_force(tiny_pair):
    before = {r: p.stat().st_mtime_ns for r, p in companion_paths(tiny_pair).items()}
    with pytest.raises(UsageError):
        export_graphs(tiny_pair)
    assert {r: p.stat().st_mtime_ns for r, p in companion_paths(tiny_pair).items()} == before
    assert all(p.is_file() for p in export_graphs(tiny_pair, force=True).values())


def test_segment_through_graphs_matches_torch_in_every_mode_without_torch(tiny_pair, studies):
    lm, _ = load_model(tiny_pair, "cpu", graphs=True)
    assert lm.graphs is not None and lm.net is None
    ref, _ = load_model(tiny_pair, "cpu")
    for mode in ("out", "union"):
        a = segment_study(studies["study0"], model=lm, mode=mode)
        b = segment_study(studies["study0"], model=ref, mode=mode)
        assert lm.net is None and a.n_calls_per_slice == b.n_calls_per_slice
        assert a.network_runtime == "onnxruntime" and b.network_runtime == "torch"
        assert a.stochastic_slices == b.stochastic_slices
        # torch itself moves these probabilities by ~5e-4 between its memory layouts or batch sizes
        assert np.abs(a.probs._m - b.probs._m).max() < 1e-3, mode
        la, lb = sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels)
        # labels may differ only where a probability lies within float rounding of the threshold
        assert int((la != lb).sum()) <= max(5, int(1e-4 * la.size)), mode
    # the union's `out` part is the `out` run's, voxel for voxel
    o = segment_study(studies["study0"], model=lm, mode="out")
    assert np.array_equal(sitk.GetArrayFromImage(a.labels_by_mode["out"]), sitk.GetArrayFromImage(o.labels))
    # bf16 needs torch: the same LoadedModel loads it then
    segment_study(studies["study0"], model=lm, mode="out", precision="bf16")
    assert lm.net is not None


@pytest.mark.skipif(not DEMO.is_dir(), reason="examples/demo_study not in this checkout")
@pytest.mark.parametrize("mode", ["out", "union"])
def test_shipped_model_on_cpu_never_imports_torch_and_matches_torch(tmp_path, mode):
    """A fresh `sdpm segment` process on the CPU: no torch import, the torch run's mask."""
    code = (
        "import sys\n"
        "from sdpm_cli.cli import main\n"
        f"sys.argv = ['sdpm', 'segment', {str(DEMO)!r}, '--mode', {mode!r}, '--device', 'cpu', '--out', "
        f"{str(tmp_path / 'onnx.nii.gz')!r}, '-q', '--threads', '2']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, timeout=300)
    ref, _ = load_model(None, "cpu")
    b = segment_study(DEMO, model=ref, mode=mode)
    a, b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "onnx.nii.gz"))), sitk.GetArrayFromImage(b.labels)
    # the runtimes' probabilities differ by float rounding (< 1e-3), so a model-grid pixel lying that
    # close to the threshold may flip; on the demo's 0.43 mm grid one 1.25 mm pixel is ~10 voxels
    # (the shipped model of 2026-12-07: 10 of 30,812 lesion voxels). Nothing more may differ.
    n_lesion = int((b > 0).sum())
    assert a.shape == b.shape and n_lesion > 0
    assert int((a != b).sum()) <= max(5, int(1e-3 * n_lesion))
