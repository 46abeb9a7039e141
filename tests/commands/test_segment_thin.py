"""A thin series end to end: read in slabs, every output on the source grid, the warning shown."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk


def test_thin_study_outputs_are_on_the_source_grid(run_cli, tiny_model, tmp_path):
    from sdpm_cli.synth import SynthConfig, generate_case

    case = generate_case(4, SynthConfig(matrix=128, thicknesses_mm=(1.0,), thickness_weights=(1.0,), lesion="hemorrhage"))
    src = tmp_path / "thin.nii.gz"
    sitk.WriteImage(case.image, str(src))
    out = tmp_path / "o"
    code, _, err = run_cli("segment", src, "--model", tiny_model, "--mode", "union", "--out", out / "mask.nii.gz",
                           "--report", out / "r.json", "--csv", out / "l.csv", "--probabilities", out / "p.nii.gz",
                           "--preview", out / "qc.png", "--no-lesion-filter", "--quiet")
    assert code == 0, err
    assert "slabs of 5 slices" in err
    mask, prob = sitk.ReadImage(str(out / "mask.nii.gz")), sitk.ReadImage(str(out / "p.nii.gz"))
    for img in (mask, prob):
        assert img.GetSize()[:3] == case.image.GetSize()
        np.testing.assert_allclose(img.GetOrigin(), case.image.GetOrigin())
        np.testing.assert_allclose(img.GetSpacing()[:3], case.image.GetSpacing())
        np.testing.assert_allclose(img.GetDirection(), case.image.GetDirection())
    m = sitk.GetArrayFromImage(mask)
    assert all(np.array_equal(m[z], m[(z // 5) * 5]) for z in range(m.shape[0]))  # each slice carries its slab
    rep = json.loads((out / "r.json").read_text())
    assert any("slabs" in w for w in rep["warnings"])
    vox_ml = float(np.prod(case.image.GetSpacing())) / 1000.0
    assert abs(rep["volumes"]["hemorrhage"]["volume_ml"] - float((m == 2).sum()) * vox_ml) < 1e-3
