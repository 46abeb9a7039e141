"""Shared test fixtures. Tests run on CPU; keep each one seconds, mark end-to-end ones `slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two xdist workers share two cores: one thread each keeps them from fighting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]


def _shared_fixtures(name: str = "dcm_qa_ct") -> Path | None:
    env = os.environ.get("SDPM_SHARED_FIXTURES")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "fixtures", REPO / "shared" / "fixtures"]:
        if (cand / name).is_dir():
            return cand / name
    return None


@pytest.fixture(scope="session")
def dcm_qa_ct() -> Path:
    """Real scanner DICOM (BSD licence) from ../shared/fixtures; skips cleanly where absent."""
    p = _shared_fixtures()
    if p is None:
        pytest.skip("../shared/fixtures/dcm_qa_ct is absent")
    return p


@pytest.fixture(scope="session")
def real_ich_slices() -> Path:
    """12 real NCCT slices with hemorrhage masks (CC BY 4.0; validation only); skips cleanly where absent."""
    p = _shared_fixtures("real_ich_slices")
    if p is None:
        pytest.skip("../shared/fixtures/real_ich_slices is absent")
    return p


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from sdpm_cli.cli import app

    def _run(*args: str):
        runner = CliRunner()
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return _run


# ---- a tiny random checkpoint and small synthetic NIfTI studies (commands, engine, serve) -------
from sdpm_cli.preprocess import PreprocessPlan  # noqa: E402

PLAN = PreprocessPlan(spacing_mm=2.5, size=96)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from sdpm_cli.model.checkpoint import save_checkpoint
    from sdpm_cli.model.network import NetConfig, SDPMNet

    torch.manual_seed(0)
    cfg = NetConfig(widths=(8, 8, 8, 8), decoder_widths=(8, 8, 8, 8), groups=4, time_dim=16)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, SDPMNet(cfg), {"name": "tiny-test", "preprocess": PLAN.to_dict()})
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """Two small NIfTI head studies (128 matrix, 5 mm) with non-trivial origins, and a broken one."""
    import SimpleITK as sitk

    from sdpm_cli.synth import SynthConfig, generate_case

    root = tmp_path_factory.mktemp("studies")
    out = {}
    for i, seed in enumerate((3, 4)):
        case = generate_case(seed, SynthConfig(matrix=128, thicknesses_mm=(5.0,), thickness_weights=(1.0,), lesion="hemorrhage"))
        p = root / f"study{i}.nii.gz"
        sitk.WriteImage(case.image, str(p))
        sitk.WriteImage(case.label, str(root / f"truth{i}.nii.gz"))
        out[f"study{i}"] = p
    broken = root / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    out["broken"] = broken
    return out
