"""Real scanner DICOM (dcm_qa_ct, BSD): series choice on a Philips export, tilt and gaps on a GE head."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest import load_study, survey_study

pytestmark = pytest.mark.fixtures


def test_philips_picks_s2010_and_says_why(dcm_qa_ct):
    s = survey_study(dcm_qa_ct / "Philips_S21570")
    rows = {r.info.number: r for r in s.rows}
    assert s.chosen.info.number == 201 and s.chosen.info.description == "STD BRAIN 5MM"
    assert "soft-tissue kernel UB" in s.chosen.reason and "28 slices" in s.chosen.reason
    assert rows[100].reason == "localizer / scout"
    assert "secondary capture" in rows[401].reason
    assert s.ignored["secondary_capture"] == 6 and s.ignored["localizer"] == 1 and s.ignored["directory"] == 4
    # the phantom is not a head: its tissue-equivalent plastic peaks near 90-100 HU and the HU gate says so
    with pytest.raises(InputRejected, match=r"soft-tissue peak at 9\d HU"):
        load_study(dcm_qa_ct / "Philips_S21570")


def test_ge_tilt_and_spacing_refused(dcm_qa_ct):
    with pytest.raises(InputRejected) as exc:
        load_study(dcm_qa_ct / "GE")
    msg = str(exc.value)
    assert "gantry tilt of 18.5 degrees" in msg and "uneven slice spacing" in msg and "1.08" in msg


@pytest.mark.slow
def test_ge_corrected_with_warning_and_exact_mapping_back(dcm_qa_ct):
    st = load_study(dcm_qa_ct / "GE", correct_tilt=True, resample_gaps=True)
    assert st.corrected == ["tilt", "gaps"]
    assert any("tilt" in w for w in st.warnings) and any("spacing" in w for w in st.warnings)
    assert st.hu["passed"] and -1010 < st.hu["air_hu"] < -990
    img = st.image
    # mask = bright bone on the corrected grid; mapped back, each source pixel gets the voxel at its position
    mask = sitk.Cast(img > 300, sitk.sitkUInt8)
    back = st.to_source_slices(mask)
    assert len(back) == 28 and all(b.shape == (512, 512) for b in back)
    rng = np.random.default_rng(0)
    for ref, lab in zip(st.slices[::5], back[::5]):
        ds = pydicom.dcmread(ref.path, stop_before_pixels=True)
        r, c = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        for j, i in rng.integers(0, 512, size=(300, 2)):
            p = np.array(ds.ImagePositionPatient, float) + i * dx * r + j * dy * c
            k = mask.TransformPhysicalPointToIndex(tuple(p))
            assert lab[j, i] == mask[k]
    # bone on the source slices and bone mapped back agree almost everywhere (interpolation at edges only)
    src = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(s.path)))[0] > 300 for s in st.slices])
    agree = (np.stack(back).astype(bool) == src).mean()
    assert agree > 0.99
