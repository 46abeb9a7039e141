"""`compare_scans` on injected truth labels (a random model cannot find lesions): expansion is
detected on grown pairs, stable pairs are not flagged, lesions are matched, new and resolved."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.compare import CompareOptions, compare_scans, scan_from_labels
from sdpm_cli.compare.report import COMPARE_SCHEMA, build_compare_report, compare_to_csv, console_lines
from sdpm_cli.errors import InputRejected
from sdpm_cli.outputs.report import schema_errors
from sdpm_cli.postprocess.uncertainty import ClassCalibration

NARROW = {n: ClassCalibration(q_lo=-0.5, q_hi=0.5, n=40) for n in ("infarct", "hemorrhage")}  # +-(0.05 V + 0.25) mL


def _scans(pair, calibration=None):
    return (scan_from_labels(pair.baseline, pair.baseline_label, calibration=calibration),
            scan_from_labels(pair.followup, pair.followup_label, calibration=calibration))


def test_grown_pair_is_flagged_with_the_true_change(grown_pair):
    cmp = compare_scans(*_scans(grown_pair, NARROW))
    true = grown_pair.meta["true_change_ml"][2]
    hem = cmp.classes["hemorrhage"]
    assert true > 6.0  # the phantom grew enough to be an expansion
    # volumes come from each scan's own native mask, so the change is the truth's, not the resampled one's
    assert hem.change.change_ml == pytest.approx(true, abs=1e-6)
    lo, hi = hem.change.change_ci
    assert lo <= true <= hi
    assert hem.calls["expansion"].call == "yes" and hem.calls["expansion"].point
    assert hem.calls["new_intraventricular"].call == "no"
    [lesion] = cmp.lesions
    assert lesion.group.status == "matched" and lesion.calls["expansion"].call == "yes"
    assert lesion.change.change_ml == pytest.approx(true, abs=1e-6)


def test_stable_moved_pair_is_not_flagged(stable_pair):
    cmp = compare_scans(*_scans(stable_pair, NARROW))
    hem = cmp.classes["hemorrhage"]
    base_ml = stable_pair.meta["baseline_ml"][2]
    # nearest-neighbour resampling of the moved phantom's truth changes its volume a little, never 6 mL
    assert abs(hem.change.change_ml) < 0.05 * base_ml
    assert hem.calls["expansion"].call == "no" and not hem.calls["expansion"].point
    # no infarct in either scan: no growth by the point volumes; the intervals cannot exclude a missed speck
    inf = cmp.classes["infarct"].calls["expansion"]
    assert not inf.point and inf.call != "yes"
    assert [g.group.status for g in cmp.lesions] == ["matched"]


def test_wide_intervals_make_the_call_uncertain(grown_pair):
    wide = {n: ClassCalibration(q_lo=-3.0, q_hi=3.0, n=40) for n in ("infarct", "hemorrhage")}
    hem = compare_scans(*_scans(grown_pair, wide)).classes["hemorrhage"]
    assert hem.calls["expansion"].point and hem.calls["expansion"].call == "uncertain"


def test_new_and_resolved_lesions(grown_pair, stable_pair):
    base, _ = _scans(stable_pair)
    empty = sitk.Image(stable_pair.followup_label.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(stable_pair.followup_label)
    cleared = scan_from_labels(stable_pair.followup, empty)
    cmp = compare_scans(base, cleared)
    assert [g.group.status for g in cmp.lesions] == ["resolved"]
    assert cmp.classes["hemorrhage"].change.change_ml == pytest.approx(-stable_pair.meta["baseline_ml"][2])
    cmp = compare_scans(scan_from_labels(stable_pair.baseline, sitk.Image(empty)), scan_from_labels(
        stable_pair.followup, stable_pair.followup_label))
    assert [g.group.status for g in cmp.lesions] == ["new"]
    assert cmp.classes["hemorrhage"].change.change_pct is None


def test_report_csv_and_console_follow_the_schema(grown_pair):
    cmp = compare_scans(*_scans(grown_pair, NARROW))
    doc = build_compare_report(cmp, software={})
    assert schema_errors(doc, COMPARE_SCHEMA) == []
    assert doc["classes"]["hemorrhage"]["expansion_call"] == "yes"
    assert set(doc["classes"]["hemorrhage"]["flags"]) == {"expansion", "growth_12_5ml", "new_intraventricular"}
    assert doc["same_patient"]["checked"] is False  # no DICOM header: skipped with a note
    rows = compare_to_csv(doc).splitlines()
    assert rows[0].startswith("scope,class") and len(rows) == 1 + 2 + len(doc["lesions"])
    lines = console_lines(doc)
    assert lines[0].startswith("registration:") and any(l.startswith("hemorrhage:") and "expansion" in l for l in lines)


def test_different_subject_keys_are_refused_unless_allowed(stable_pair):
    b, f = _scans(stable_pair)
    b.subject_key, f.subject_key = "a" * 16, "b" * 16
    with pytest.raises(InputRejected, match="different patients"):
        compare_scans(b, f)
    cmp = compare_scans(b, f, CompareOptions(allow_different_patients=True))
    assert cmp.same_patient == {**cmp.same_patient, "checked": True, "same": False}
    assert "a" * 16 not in str(build_compare_report(cmp, software={}))  # the key itself is never written
