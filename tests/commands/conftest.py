"""Fixtures shared by the command tests: a tiny randomly initialised checkpoint (geometry, files and
exit codes are what these tests check, not the answer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpm_cli.model.checkpoint import save_checkpoint
from sdpm_cli.model.network import NetConfig, SDPMNet
from sdpm_cli.preprocess import PreprocessPlan

PLAN = PreprocessPlan(spacing_mm=2.5, size=96)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = NetConfig(widths=(8, 8, 8, 8), decoder_widths=(8, 8, 8, 8), groups=4, time_dim=16)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, SDPMNet(cfg), {"name": "tiny-test", "preprocess": PLAN.to_dict()})
    return path
