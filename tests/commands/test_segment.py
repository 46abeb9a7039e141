"""`sdpm segment` and the pipeline: single study, outputs, refusals, batch isolation and sharding.

These use a tiny randomly initialised checkpoint (the answer is not the point here; geometry,
files and exit codes are) on small synthetic studies. The shipped model's end-to-end run on
examples/ is in test_segment_example.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.synth import SynthConfig, generate_case

# tiny_model and studies: tests/commands/conftest.py

def test_single_study_writes_mask_on_the_native_grid(run_cli, tiny_model, studies, tmp_path):
    mask = tmp_path / "mask.nii.gz"
    report = tmp_path / "report.json"
    code, out, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--mode", "union",
                             "--out", mask, "--report", report, "--csv", tmp_path / "lesions.csv",
                             "--probabilities", tmp_path / "prob.nii.gz", "--preview", tmp_path / "qc.png", "--quiet")
    assert code == 0, err
    img, src = sitk.ReadImage(str(mask)), sitk.ReadImage(str(studies["study0"]))
    assert img.GetSize() == src.GetSize()
    assert np.allclose(img.GetOrigin(), src.GetOrigin()) and np.allclose(img.GetSpacing(), src.GetSpacing())
    assert np.allclose(img.GetDirection(), src.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(img))) <= {0, 1, 2}
    rep = json.loads(report.read_text())
    assert rep["run"]["mode"] == "union" and rep["model"]["name"] == "tiny-test"
    assert rep["run"]["n_calls_per_slice"] >= 3
    assert "infarct:" in out and "hemorrhage:" in out
    prob = sitk.ReadImage(str(tmp_path / "prob.nii.gz"))
    assert prob.GetNumberOfComponentsPerPixel() == 2 and prob.GetSize() == src.GetSize()
    assert (tmp_path / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*part*"))


def test_union_contains_every_mode_and_volume_matches_mask(tiny_model, studies, tmp_path):
    from sdpm_cli.pipeline import segment_study

    # also a 2.5 mm study whose native grid (1.7 mm pixels) is not the model grid (2.5 mm): there,
    # interpolating each mode on its own used to leave mode voxels outside the union
    case = generate_case(7, SynthConfig(matrix=128, thicknesses_mm=(2.5,), thickness_weights=(1.0,), fov_mm=(220.0, 220.0),
                                        domain="clinical"))
    thin = tmp_path / "thin.nii.gz"
    sitk.WriteImage(case.image, str(thin))
    for study in (studies["study1"], thin):
        seg = segment_study(study, model=tiny_model, mode="union", seed=1)
        union = sitk.GetArrayFromImage(seg.labels_by_mode["union"])
        assert (union > 0).any()
        for m in ("out", "salient", "infer"):
            # the mode run on its own, as a user compares `--mode salient` with `--mode union`
            alone = sitk.GetArrayFromImage(segment_study(study, model=tiny_model, mode=m, seed=1).labels)
            assert np.array_equal(alone, sitk.GetArrayFromImage(seg.labels_by_mode[m])), m
            lab = alone
            assert not np.any((lab > 0) & (union == 0)), m  # every lesion voxel of a mode is lesion in union
            for c, other in ((1, 2), (2, 1)):  # ... and of the same class unless another mode calls it the other
                assert not np.any((lab == c) & (union != c) & (union != other)), (m, c)
    arr = sitk.GetArrayFromImage(seg.labels)
    voxel_ml = np.prod(seg.labels.GetSpacing()) / 1000
    for name, label in (("infarct", 1), ("hemorrhage", 2)):
        assert seg.volumes[name].volume_ml == pytest.approx(np.count_nonzero(arr == label) * voxel_ml)


def test_same_seed_same_mask(tiny_model, studies):
    from sdpm_cli.pipeline import segment_study

    a = segment_study(studies["study0"], model=tiny_model, mode="salient", seed=5)
    b = segment_study(studies["study0"], model=tiny_model, mode="salient", seed=5)
    assert np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels))
    assert np.array_equal(a.probs, b.probs)


def test_existing_output_needs_force(run_cli, tiny_model, studies, tmp_path):
    mask = tmp_path / "mask.nii.gz"
    mask.write_text("keep me")
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--mode", "out", "--out", mask)
    assert code == 2 and "--force" in err
    assert mask.read_text() == "keep me"


def test_bad_inputs_get_one_line_and_their_exit_code(run_cli, tiny_model, studies, tmp_path):
    mask = tmp_path / "m.nii.gz"
    code, _, err = run_cli("segment", studies["broken"], "--model", tiny_model, "--out", mask)
    assert code == 3 and "Traceback" not in err and not mask.exists()
    code, _, err = run_cli("segment", studies["study0"], "--model", tmp_path / "missing.pt", "--out", mask)
    assert code == 4 and not mask.exists()
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--mode", "bogus", "--out", mask)
    assert code == 2
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--dicom-seg", tmp_path / "s.dcm",
                           "--out", mask)
    assert code == 2 and "DICOM" in err and not mask.exists() and not (tmp_path / "s.dcm").exists()


def test_cuda_request_falls_back_to_cpu_with_a_warning(run_cli, tiny_model, studies, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli("segment", studies["study0"], "--model", tiny_model, "--mode", "out", "--device", "cuda",
                           "--out", tmp_path / "m.nii.gz")
    assert code == 0 and "CUDA is not available" in err


def _batch_dir(studies, tmp_path) -> Path:
    parent = tmp_path / "incoming"
    parent.mkdir()
    for name in ("study0", "study1", "broken"):
        (parent / studies[name].name).symlink_to(studies[name])
    return parent


def test_batch_isolates_a_broken_study_and_reports_partial_failure(run_cli, tiny_model, studies, tmp_path):
    parent = _batch_dir(studies, tmp_path)
    out = tmp_path / "results"
    log = tmp_path / "log.jsonl"
    code, _, err = run_cli("segment", "--batch", parent, "--out-dir", out, "--model", tiny_model, "--mode", "out",
                           "--report", "report.json", "--log-json", log)
    assert code == 6, err
    rows = {r["study"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == {"study0", "study1", "broken"}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["exit_code"] == "3" and rows["broken"]["error"]
    for ok in ("study0", "study1"):
        assert rows[ok]["status"] == "ok"
        assert (out / ok / "mask.nii.gz").exists() and (out / ok / "report.json").exists()
    assert not (out / "broken" / "mask.nii.gz").exists()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["study"] for e in events} == {"study0", "study1", "broken"}

    # --continue skips the finished studies and retries only the failed one
    code, _, err = run_cli("segment", "--batch", parent, "--out-dir", out, "--model", tiny_model, "--mode", "out",
                           "--report", "report.json", "--continue")
    assert code == 6
    rows = {r["study"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["study0"]["status"] == "skipped" and rows["broken"]["status"] == "failed"


def test_batch_all_good_exits_zero_and_shards_partition(run_cli, tiny_model, studies, tmp_path):
    out = tmp_path / "results"
    seen = []
    for i in (1, 2):
        code, _, err = run_cli("segment", studies["study0"], studies["study1"], "--out-dir", out, "--model", tiny_model,
                               "--mode", "out", "--shard", f"{i}/2")
        assert code == 0, err
        rows = list(csv.DictReader((out / f"summary.shard{i}of2.csv").open()))
        seen += [r["study"] for r in rows]
    assert sorted(seen) == ["study0", "study1"]
    code, _, err = run_cli("segment", studies["study0"], "--out-dir", out, "--model", tiny_model, "--shard", "3/2")
    assert code == 2


def test_lesion_filter_from_the_model_header_applies_to_mask_and_interval(run_cli, tiny_model, studies, tmp_path):
    from sdpm_cli.model.checkpoint import read_header, update_header
    from sdpm_cli.pipeline import segment_study

    plain = segment_study(studies["study1"], model=tiny_model, mode="union", seed=1)
    assert plain.lesion_filter == {}
    before = sum(v.volume_ml for v in plain.volumes.values())
    assert before > 0  # the random tiny model calls some lesion, so the filter has work to do
    huge = {"infarct": {"min_ml": 1e6}, "hemorrhage": {"min_ml": 1e6}}
    filtered_model = update_header(tiny_model, {"postprocess": {"lesion_filter": huge}}, out=tmp_path / "f.pt")
    assert read_header(filtered_model)["sha256"] == read_header(tiny_model)["sha256"]  # same weights
    seg = segment_study(studies["study1"], model=filtered_model, mode="union", seed=1)
    assert not sitk.GetArrayFromImage(seg.labels).any()
    for v in seg.volumes.values():
        assert v.volume_ml == 0 and v.sample_range_ml == (0.0, 0.0) and v.ci95_ml is None  # no calibration here
    assert seg.lesion_filter["infarct"]["min_ml"] == 1e6
    # an explicit empty filter turns the model's off: the same answer as the plain model
    off = segment_study(studies["study1"], model=filtered_model, mode="union", seed=1, lesion_filter={})
    assert np.array_equal(sitk.GetArrayFromImage(off.labels), sitk.GetArrayFromImage(plain.labels))
    report = tmp_path / "r.json"
    code, _, err = run_cli("segment", studies["study1"], "--model", filtered_model, "--mode", "out",
                           "--out", tmp_path / "m.nii.gz", "--report", report, "--quiet")
    assert code == 0, err
    assert json.loads(report.read_text())["run"]["lesion_filter"]["hemorrhage"]["min_ml"] == 1e6
    code, _, err = run_cli("segment", studies["study1"], "--model", filtered_model, "--mode", "out", "--no-lesion-filter",
                           "--out", tmp_path / "m2.nii.gz", "--report", tmp_path / "r2.json", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "r2.json").read_text())["run"]["lesion_filter"] == {}


def test_peak_probability_rule_drops_lesions_without_a_confident_core(run_cli, tiny_model, studies, tmp_path):
    """A filter rule on the lesion's most confident voxel (header `min_peak_prob`), in every mode:
    it removes whole lesions (what stays is a subset of the unfiltered mask, and fewer voxels), only
    of the class it names, and volumes follow the mask."""
    from sdpm_cli.model.checkpoint import update_header
    from sdpm_cli.pipeline import segment_study

    m = update_header(tiny_model, {"postprocess": {"lesion_filter": {"infarct": {"min_peak_prob": 0.9}}}},
                      out=tmp_path / "peak.pt")
    for mode in ("out", "union"):
        plain = segment_study(studies["study1"], model=tiny_model, mode=mode, seed=1)
        peak = segment_study(studies["study1"], model=m, mode=mode, seed=1)
        assert peak.lesion_filter == {"infarct": {"min_ml": 0.0, "min_extent_mm": 0.0, "min_peak_prob": 0.9}}
        for md, img in peak.labels_by_mode.items():
            a, b = sitk.GetArrayFromImage(plain.labels_by_mode[md]), sitk.GetArrayFromImage(img)
            # hemorrhage has no rule: it keeps every voxel, and may only gain where an infarct it
            # overlapped went (one class per voxel, decided on the native grid for union)
            assert not ((a == 2) & (b != 2)).any() and not ((b == 2) & (a != 2) & (a != 1)).any(), md
            assert not ((b == 1) & (a != 1)).any(), md
            if md == mode:  # the random tiny model's faint infarct patches go, its saturated ones stay
                assert 0 < (b == 1).sum() < (a == 1).sum(), md
                assert peak.volumes["infarct"].volume_ml < plain.volumes["infarct"].volume_ml
    report = tmp_path / "r.json"  # the rule is reported (and the report validates against its schema)
    code, _, err = run_cli("segment", studies["study1"], "--model", m, "--out", tmp_path / "m.nii.gz",
                           "--report", report, "--quiet")
    assert code == 0, err
    assert json.loads(report.read_text())["run"]["lesion_filter"]["infarct"]["min_peak_prob"] == 0.9


def test_mirror_rule_drops_only_lesions_that_are_not_brighter_than_their_mirror(tiny_model, studies, tmp_path):
    """The mirror criterion runs inside the engine (header `min_mirror_contrast_hu`): a bound no
    lesion can miss changes nothing; a bound no lesion can meet removes every hemorrhage lesion whose
    mirror is known and keeps the rest of the mask as it was; infarct has no rule and is untouched."""
    from sdpm_cli.model.checkpoint import update_header
    from sdpm_cli.pipeline import segment_study

    plain = segment_study(studies["study1"], model=tiny_model, mode="out", seed=1)
    a = sitk.GetArrayFromImage(plain.labels)
    assert (a == 2).any()  # the random tiny model calls some blood, so the rule has work to do
    for bound, drops in ((-1e4, False), (1e4, True)):
        m = update_header(tiny_model, {"postprocess": {"lesion_filter": {"hemorrhage": {"min_mirror_contrast_hu": bound}}}},
                          out=tmp_path / f"mirror{bound:+.0f}.pt")
        seg = segment_study(studies["study1"], model=m, mode="out", seed=1)
        b = sitk.GetArrayFromImage(seg.labels)
        assert seg.lesion_filter["hemorrhage"]["min_mirror_contrast_hu"] == bound
        assert not any("mid-sagittal" in w for w in seg.warnings)  # a synthetic head has a midline
        assert np.array_equal(b == 1, a == 1)  # infarct has no rule: untouched
        assert not ((b == 2) & (a != 2)).any()
        if drops:
            assert (b == 2).sum() < (a == 2).sum()
            assert seg.volumes["hemorrhage"].volume_ml < plain.volumes["hemorrhage"].volume_ml
        else:
            assert np.array_equal(a, b)


def test_calibrated_interval_contains_the_point_volume_in_every_mode(run_cli, tiny_model, studies, tmp_path):
    from sdpm_cli.model.checkpoint import update_header
    from sdpm_cli.pipeline import segment_study
    from sdpm_cli.postprocess.uncertainty import ClassCalibration, VolumeCalibration

    cal = VolumeCalibration(level=0.95, source="a test calibration", classes={
        m: {"infarct": ClassCalibration(-0.8, 1.5, 40), "hemorrhage": ClassCalibration(-0.6, 0.9, 40)}
        for m in ("out", "salient", "infer", "union")})
    model = update_header(tiny_model, {"postprocess": {"volume_calibration": cal.to_dict()}}, out=tmp_path / "c.pt")
    seg = segment_study(studies["study1"], model=model, mode="union", seed=1)
    assert seg.interval_source == "a test calibration"
    for m, vols in seg.volumes_by_mode.items():
        for name, v in vols.items():
            assert v.ci95_ml is not None and v.ci95_ml[0] <= v.volume_ml <= v.ci95_ml[1], (m, name)
            arr = sitk.GetArrayFromImage(seg.labels_by_mode[m])
            assert v.volume_ml == pytest.approx(np.count_nonzero(arr == v.label) * np.prod(seg.labels.GetSpacing()) / 1000)
    report = tmp_path / "r.json"
    code, out, err = run_cli("segment", studies["study1"], "--model", model, "--mode", "union", "--out", tmp_path / "m.nii.gz",
                             "--report", report, "--csv", tmp_path / "l.csv")
    assert code == 0, err
    rep = json.loads(report.read_text())
    for name, v in rep["volumes"].items():
        assert v["ci95_ml"][0] <= v["volume_ml"] <= v["ci95_ml"][1]
        assert v["interval_covers"] == "true lesion volume, calibrated on a test calibration"
    for les in rep["lesions"]:
        assert les["ci95_ml"][0] <= les["volume_ml"] <= les["ci95_ml"][1] and 0 <= les["mean_prob"] <= 1
    assert "interval of the true volume" in out and "calibrated on a test calibration" in err + out
    rows = list(csv.DictReader((tmp_path / "l.csv").open()))
    assert all(float(r["ci95_lo_ml"]) <= float(r["volume_ml"]) <= float(r["ci95_hi_ml"]) for r in rows)
