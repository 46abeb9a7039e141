"""`sdpm segment` on a head whose header is wrong about its orientation (research data that lost it):
the user is told, the report says what was done, the mask stays on the source grid, and
`--orientation header` believes the header."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from sdpm_cli.pipeline import segment_study
from sdpm_cli.preprocess.orientation import quarter_turned


def _stored_sideways(src, dest):
    """The study's voxels turned a quarter turn in-plane under the same (now wrong) header."""
    sitk.WriteImage(quarter_turned(sitk.ReadImage(str(src)), 1), str(dest))
    return dest


def test_a_sideways_study_is_segmented_upright_with_a_warning(run_cli, tiny_model, studies, tmp_path):
    side = _stored_sideways(studies["study0"], tmp_path / "side.nii.gz")
    mask, report = tmp_path / "m.nii.gz", tmp_path / "r.json"
    code, out, err = run_cli("segment", side, "--model", tiny_model, "--out", mask, "--report", report, "--quiet")
    assert code == 0, err
    assert "90 degrees to the orientation in the file's header" in err
    rep = json.loads(report.read_text())
    assert rep["run"]["orientation"]["quarter_turns"] == 3
    assert rep["validated_domain"]["header_orientation_wrong"] is True
    assert any("90 degrees" in w for w in rep["warnings"])
    m, s = sitk.ReadImage(str(mask)), sitk.ReadImage(str(side))
    assert m.GetSize() == s.GetSize() and np.allclose(m.GetDirection(), s.GetDirection())
    assert np.allclose(m.GetOrigin(), s.GetOrigin())

    code, out, err = run_cli("segment", side, "--model", tiny_model, "--out", tmp_path / "h.nii.gz", "--report",
                             tmp_path / "h.json", "--orientation", "header", "--quiet")
    assert code == 0, err
    assert "90 degrees" not in err
    assert "orientation" not in json.loads((tmp_path / "h.json").read_text())["run"]
    code, out, err = run_cli("segment", side, "--model", tiny_model, "--out", tmp_path / "x.nii.gz",
                             "--orientation", "sideways", "--quiet")
    assert code != 0 and "unknown orientation" in err and "Traceback" not in err
    # the input gate says it too, before any model runs
    code, out, err = run_cli("qc", side, "--json")
    assert code == 0 and json.loads(out)["orientation"]["quarter_turns"] == 3 and "90 degrees" in err
    code, out, err = run_cli("qc", studies["study0"], "--json")
    assert code == 0 and json.loads(out)["orientation"]["quarter_turns"] == 0 and "90 degrees" not in err


def test_the_turned_study_gets_the_upright_study_s_answer(tiny_model, studies, tmp_path):
    """Exact quarter turns: the mask of the sideways copy is the upright mask turned the same way."""
    side = _stored_sideways(studies["study0"], tmp_path / "side.nii.gz")
    up = sitk.GetArrayFromImage(segment_study(studies["study0"], model=tiny_model, mode="out").labels)
    got = sitk.GetArrayFromImage(segment_study(side, model=tiny_model, mode="out").labels)
    want = np.rot90(up, 1, axes=(1, 2))
    assert (want > 0).any()
    assert (got == want).mean() > 0.999


def test_a_decubitus_scan_is_never_turned(tiny_model, studies, tmp_path):
    """A patient lying on one side (DICOM PatientPosition HFDL/HFDR) has the holder beside the head by
    design: the scanner's header is believed, whatever the anatomy says."""
    import dataclasses

    from sdpm_cli.ingest import load_study

    side = _stored_sideways(studies["study0"], tmp_path / "side.nii.gz")
    st = load_study(side)
    assert segment_study(st, model=tiny_model, mode="out").orientation["quarter_turns"] == 3
    st = load_study(side)
    st.series = dataclasses.replace(st.series, patient_position="HFDL")
    assert st.series.decubitus
    seg = segment_study(st, model=tiny_model, mode="out")
    assert seg.orientation == {} and not any("90 degrees" in w for w in seg.warnings)
