"""Fixtures shared by the command tests: a tiny random checkpoint and small synthetic NIfTI studies."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from sdpm_cli.model.checkpoint import save_checkpoint
from sdpm_cli.model.network import NetConfig, SDPMNet
from sdpm_cli.preprocess import PreprocessPlan
from sdpm_cli.synth import SynthConfig, generate_case

PLAN = PreprocessPlan(spacing_mm=2.5, size=96)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = NetConfig(widths=(8, 8, 8, 8), decoder_widths=(8, 8, 8, 8), groups=4, time_dim=16)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, SDPMNet(cfg), {"name": "tiny-test", "preprocess": PLAN.to_dict()})
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """Two small NIfTI head studies (128 matrix, 5 mm) with non-trivial origins, and a broken one."""
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
