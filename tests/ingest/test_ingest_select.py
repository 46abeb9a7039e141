"""Series choice follows explicit rules, and says why every other series was left out."""

from __future__ import annotations

import pytest

from sdpm_cli.errors import UsageError
from sdpm_cli.ingest import kernel_class, load_study, survey_study

from .dicom_factory import SeriesSpec, write_series


@pytest.mark.parametrize(
    "kernel,expected",
    [("STANDARD", "soft"), ("SOFT", "soft"), ("STD+", "soft"), ("BONEPLUS", "bone"), ("LUNG", "bone"),
     ("H30s", "soft"), ("Hr38", "soft"), ("J30s", "soft"), ("H70h", "bone"), ("Br64d3", "bone"), ("B70f", "bone"),
     ("UB", "soft"), ("UC", "soft"), ("D", "bone"), ("YC", "bone"), ("FC21", "soft"), ("FC30", "bone"), ("XYZ", "unknown")],
)
def test_kernel_classes_across_vendors(kernel, expected):
    assert kernel_class(kernel) == expected


def _rows(folder):
    s = survey_study(folder)
    return s, {r.info.number: r for r in s.rows}


def test_rules_in_order_with_reasons(tmp_path):
    chosen = SeriesSpec(series_number=2, kernel="H30s")
    write_series(tmp_path / "a", chosen)
    write_series(tmp_path / "b", SeriesSpec(series_number=3, kernel="H70h"))  # bone kernel
    write_series(tmp_path / "c", SeriesSpec(series_number=4, spacing=1.25, n_slices=96, thickness=1.25))  # thin
    write_series(tmp_path / "d", SeriesSpec(series_number=5, tilt_deg=12.0))  # needs correction
    write_series(tmp_path / "e", SeriesSpec(series_number=6, n_slices=20))  # fewer slices
    write_series(tmp_path / "f", SeriesSpec(series_number=7, image_type=("DERIVED", "SECONDARY", "AXIAL")))
    write_series(tmp_path / "g", SeriesSpec(series_number=8, image_type=("DERIVED", "SECONDARY", "REFORMATTED"), description="AX MPR"))
    write_series(tmp_path / "h", SeriesSpec(series_number=9, iop=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0)))  # sagittal
    s, rows = _rows(tmp_path)
    assert s.chosen.info.uid == chosen.series_uid and s.refusal is None
    assert "soft-tissue kernel H30s" in rows[2].reason and "complete and untilted" in rows[2].reason
    assert "bone/sharp kernel (H70h)" in rows[3].reason
    assert "slice thickness 1.25 mm is further from the 5 mm" in rows[4].reason
    assert "needs correction (tilt)" in rows[5].reason
    assert "fewer slices (20 < 24)" in rows[6].reason
    assert "not ORIGINAL/PRIMARY" in rows[7].reason
    assert "reformat" in rows[8].reason
    assert "sagittal plane, not axial" in rows[9].reason
    assert sum(r.chosen for r in s.rows) == 1
    assert load_study(tmp_path).series.uid == chosen.series_uid


def test_series_override(tmp_path):
    write_series(tmp_path, SeriesSpec(series_number=2))
    bone = SeriesSpec(series_number=3, kernel="H70h")
    write_series(tmp_path, bone)
    st = load_study(tmp_path, series_uid=bone.series_uid)
    assert st.series.uid == bone.series_uid and st.survey.chosen.reason == "chosen with --series"
    with pytest.raises(UsageError, match="not in"):
        load_study(tmp_path, series_uid="1.2.3.999")


def test_survey_reads_headers_only_and_is_fast(tmp_path):
    import time

    paths = write_series(tmp_path, n_slices=30)
    for p in paths:  # pixels that cannot be decoded: a survey must not care
        data = p.read_bytes()
        p.write_bytes(data[:-500])
    t = time.perf_counter()
    s = survey_study(tmp_path)
    assert time.perf_counter() - t < 1.0
    assert s.chosen is not None and s.chosen.info.n_slices == 30
