"""Options shared by the commands behave the same everywhere."""

from __future__ import annotations

import torch


def test_threads_bounds_torch_and_rejects_negative(run_cli, tiny_model, studies, tmp_path):
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--out", tmp_path / "m.nii.gz",
                               "--threads", "1", "--quiet")
        assert code == 0, err
        assert torch.get_num_threads() == 1
        code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--out", tmp_path / "n.nii.gz",
                               "--threads", "-1")
        assert code == 2 and not (tmp_path / "n.nii.gz").exists()
    finally:
        torch.set_num_threads(before)


def test_ingest_options_reach_every_command(run_cli):
    for cmd in ("segment", "compare", "qc", "convert"):
        code, out, _ = run_cli(cmd, "--help")
        assert code == 0
        for flag in ("--correct-tilt", "--resample-gaps", "--refuse-lossy"):
            assert flag in out, (cmd, flag)


def test_precision_bf16_runs_and_an_unknown_one_is_refused(run_cli, tiny_model, studies, tmp_path):
    import numpy as np
    import SimpleITK as sitk

    masks = {}
    for prec in ("fp32", "bf16"):
        m = tmp_path / f"{prec}.nii.gz"
        code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--out", m, "--precision", prec, "--quiet")
        assert code == 0, err
        masks[prec] = sitk.ReadImage(str(m))
    a, b = (sitk.GetArrayFromImage(masks[p]) for p in ("fp32", "bf16"))
    assert a.shape == b.shape and masks["fp32"].GetOrigin() == masks["bf16"].GetOrigin()
    assert (a == b).mean() > 0.99  # the same answer up to boundary voxels
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--out", tmp_path / "x.nii.gz",
                           "--precision", "fp8")
    assert code == 2 and "precision" in err and not (tmp_path / "x.nii.gz").exists()
