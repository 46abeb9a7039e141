"""JSON report: schema, per-lesion table (volumes, centroids, ABC/2), CSV, and no PHI unless asked."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.report import (
    REPORT_SCHEMA,
    build_report,
    lesion_rows,
    report_from_segmentation,
    report_to_csv,
    validate_report,
    write_report,
)

SPACING = (0.5, 0.8, 5.0)
ORIGIN = (-20.0, 10.0, 30.0)
SHA = "ab" * 32


def labels_image() -> sitk.Image:
    a = np.zeros((8, 20, 30), np.uint8)
    a[2:5, 4:8, 10:20] = 1  # infarct box: 3 x 4 x 10 voxels = 120 voxels of 2 mm^3 = 0.24 mL
    a[6, 15:17, 2:4] = 1  # small infarct: 4 voxels
    a[1:3, 12:14, 25:28] = 2  # hemorrhage box 2 x 2 x 3 = 12 voxels
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def make(**kw):
    args = dict(
        volumes={"infarct": {"volume_ml": 0.248, "ci95_ml": (0.2, 0.3), "n_samples": 8}, "hemorrhage": 0.024},
        lesions=lesion_rows(labels_image()),
        series={"uid": "1.2.3", "number": 2, "description": "HEAD 5mm", "PatientName": "Doe^Jane", "patient_id": "X1"},
        warnings=["slice thickness 5 mm"],
        model={"name": "sdpm-default", "version": "0.1.0", "sha256": SHA},
        run={"mode": "union", "preset": "fast", "seed": 0, "device": "cpu", "runtime_s": 12.3456},
        software={"sdpm": "0.1.0", "torch": "2.13.0"},
        created_utc="2025-01-01T00:00:00Z",
    )
    args.update(kw)
    return build_report(**args)


def test_lesion_rows_hand_values():
    rows = lesion_rows(labels_image())
    assert [(r["id"], r["class"], r["n_voxels"]) for r in rows] == [(1, "infarct", 120), (2, "infarct", 4), (3, "hemorrhage", 12)]
    big = rows[0]
    assert big["volume_ml"] == pytest.approx(120 * 2.0 / 1000)
    assert big["abc2_ml"] == pytest.approx(big["volume_ml"])  # ABC/2 is exact on a box
    # centre of indices x 10..19, y 4..7, z 2..4 -> (14.5, 5.5, 3)
    assert big["centroid_mm"] == pytest.approx([-20 + 14.5 * 0.5, 10 + 5.5 * 0.8, 30 + 3 * 5.0])
    assert (big["slice_first"], big["slice_last"]) == (2, 4)
    assert (rows[2]["slice_first"], rows[2]["slice_last"]) == (1, 2)


def test_report_holds_its_schema_and_the_inputs():
    r = make()
    validate_report(r)
    assert r["volumes"]["infarct"] == {"label": 1, "volume_ml": 0.248, "ci95_ml": [0.2, 0.3], "n_samples": 8, "n_lesions": 2}
    assert r["volumes"]["hemorrhage"]["ci95_ml"] is None and r["volumes"]["hemorrhage"]["n_lesions"] == 1
    assert r["model"]["sha256"] == SHA and r["run"]["runtime_s"] == 12.346
    assert r["warnings"] == ["slice thickness 5 mm"]
    json.loads(json.dumps(r, allow_nan=False))  # plain JSON, no NaN


def test_schema_is_valid_json_schema_and_agrees():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    r = make()
    jsonschema.validate(r, REPORT_SCHEMA)
    bad = copy.deepcopy(r)
    bad["lesions"][0]["class"] = "tumour"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, REPORT_SCHEMA)
    with pytest.raises(ValueError, match="tumour"):
        validate_report(bad)


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda r: r.pop("model"), "missing 'model'"),
        (lambda r: r["model"].update(sha256="xyz"), "sha256"),
        (lambda r: r["volumes"]["infarct"].update(volume_ml=math.nan), "volume_ml"),
        (lambda r: r["volumes"]["infarct"].update(volume_ml=-1.0), "below 0"),
        (lambda r: r["run"].update(mode="fastest"), "mode"),
        (lambda r: r.update(extra=1), "unexpected key 'extra'"),
        (lambda r: r["series"].update(AccessionNumber="ACC-1"), "AccessionNumber"),
    ],
)
def test_validator_catches(breakage, message):
    r = make()
    breakage(r)
    with pytest.raises(ValueError, match=message):
        validate_report(r)


def test_no_phi_unless_asked():
    r = make(phi={"PatientName": "Doe^Jane", "PatientID": "X1"})
    text = json.dumps(r)
    assert "phi" not in r and "Doe" not in text and "X1" not in text
    assert r["series"] == {"uid": "1.2.3", "number": 2, "description": "HEAD 5mm"}
    r2 = make(include_phi=True, phi={"PatientName": "Doe^Jane", "PatientID": "X1"})
    assert r2["phi"] == {"PatientName": "Doe^Jane", "PatientID": "X1"}
    assert "PatientName" not in r2["series"]  # identifiers live only under "phi"
    validate_report(r2)


def test_csv_one_row_per_lesion():
    r = make()
    lines = report_to_csv(r).splitlines()
    assert lines[0].startswith("id,class,label,volume_ml,abc2_ml,centroid_x_mm")
    assert len(lines) == 1 + 3
    first = lines[1].split(",")
    assert first[:4] == ["1", "infarct", "1", "0.2400"] and first[4] == "0.2400"
    empty = make(lesions=[])
    assert report_to_csv(empty).splitlines() == [report_to_csv(r).splitlines()[0]]


def test_write_report_atomic_and_no_overwrite(tmp_path):
    dest = write_report(make(), tmp_path / "report.json")
    assert json.loads(dest.read_text())["schema"] == "sdpm-report/1"
    with pytest.raises(UsageError):
        write_report(make(), dest)
    write_report(make(), dest, force=True)


def test_from_a_pipeline_segmentation():
    from sdpm_cli.pipeline import ClassVolume

    labels = labels_image()
    seg = SimpleNamespace(
        labels=labels,
        volumes={
            "infarct": ClassVolume("infarct", 1, 0.248, (0.21, 0.27), 8),
            "hemorrhage": ClassVolume("hemorrhage", 2, 0.024, None, 1),
        },
        study=SimpleNamespace(series={"uid": "1.2.3", "description": "HEAD"}),
        warnings=[],
        model=SimpleNamespace(name="m.pt", sha256=SHA, header={"version": "0.1.0"}),
        mode="out", preset="fast", seed=3, device="cpu", timings={"total_s": 4.0},
    )  # fmt: skip
    r = report_from_segmentation(seg)
    assert r["volumes"]["infarct"]["ci95_ml"] == [0.21, 0.27]
    assert {k: r["run"][k] for k in ("mode", "preset", "seed", "device", "runtime_s")} == {
        "mode": "out", "preset": "fast", "seed": 3, "device": "cpu", "runtime_s": 4.0}
    assert r["run"]["timings"] == {"total_s": 4.0}  # stage timings travel with the report (benchmarks read them)
    assert len(r["lesions"]) == 3 and r["software"]["sdpm"]
    assert "intended_use" not in r["model"] and "caveat" not in r["model"]  # a model that says nothing of its use


def test_the_model_s_caveat_travels_with_the_report():
    from sdpm_cli.model.registry import Validation

    v = Validation.from_header({"validation": {"intended_use": "research", "caveat": "phantoms only"}})
    seg = SimpleNamespace(
        labels=labels_image(), volumes={n: 0.0 for n in ("infarct", "hemorrhage")},
        study=SimpleNamespace(series={}), warnings=[],
        model=SimpleNamespace(name="m.pt", sha256=SHA, header={}, validation=v),
        mode="out", preset="fast", seed=0, device="cpu", timings={},
    )  # fmt: skip
    r = report_from_segmentation(seg)
    validate_report(r)
    assert r["model"]["intended_use"] == "research" and r["model"]["caveat"] == "phantoms only"
    assert Validation.from_header({}) == Validation("", "")  # a locally trained model: nothing to say


def test_dark_infarcts_are_carried_and_checked():
    from sdpm_cli.postprocess.darkness import DarkInfarct

    d = DarkInfarct(volume_ml=21.27, median_hu=17.0, parenchyma_hu=31.0, csf_share=0.362, slices=(21, 25),
                    asymmetric_share=0.337)
    r = make(dark_infarcts=[d.to_dict()])
    validate_report(r)
    assert r["dark_infarcts"] == [{"volume_ml": 21.27, "median_hu": 17.0, "parenchyma_hu": 31.0,
                                   "csf_dark_share": 0.362, "asymmetric_csf_dark_share": 0.337, "slices": [21, 25]}]
    assert "dark_infarcts" not in make()  # only when there is one
    no_line = make(dark_infarcts=[DarkInfarct(1.0, 5.0, 30.0, 0.5, (0, 1)).to_dict()])
    assert no_line["dark_infarcts"][0]["asymmetric_csf_dark_share"] is None
    validate_report(no_line)
    bad = copy.deepcopy(r)
    bad["dark_infarcts"][0]["csf_dark_share"] = 1.5
    with pytest.raises(ValueError, match="csf_dark_share"):
        validate_report(bad)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(r, REPORT_SCHEMA)
    jsonschema.validate(no_line, REPORT_SCHEMA)
