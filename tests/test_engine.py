"""The engine: one failure policy, one study loop and one output transaction for every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpm_cli.engine import Engine, StudyJob, isolated, plan_jobs, study_outputs
from sdpm_cli.errors import EXIT_INPUT, EXIT_RUNTIME, InputRejected, ModelError, UsageError
from sdpm_cli.pipeline import SegmentOptions


def test_isolated_records_study_failures_and_stops_on_model_errors():
    assert isolated(lambda: 7) == (7, None)

    def rejected():
        raise InputRejected("not a head")

    def crash():
        raise ZeroDivisionError("division by zero\nsecond line")

    def model():
        raise ModelError("corrupt checkpoint")

    assert isolated(rejected) == (None, (EXIT_INPUT, "not a head"))
    assert isolated(crash) == (None, (EXIT_RUNTIME, "unexpected ZeroDivisionError: division by zero"))
    with pytest.raises(ModelError):
        isolated(model)


def test_options_are_checked_before_the_model_is_loaded():
    with pytest.raises(UsageError, match="unknown mode 'fastest'"):
        Engine("/no/such/model.pt", options=SegmentOptions(mode="fastest"))
    with pytest.raises(UsageError, match="unknown precision"):
        SegmentOptions(precision="fp8").check()
    o = SegmentOptions().with_(mode="out", correct_tilt=True)
    assert o.mode == "out" and o.ingest.correct_tilt and not o.ingest.resample_gaps
    with pytest.raises(TypeError):
        SegmentOptions().with_(no_such_field=1)


def test_run_many_isolates_a_broken_study_and_resumes(tiny_model, studies, tmp_path):
    items = [studies["study0"], studies["broken"]]
    jobs = plan_jobs(items, tmp_path / "out", {"report": "report.json"})
    assert [j.name for j in jobs] == ["study0", "broken"]
    engine = Engine(tiny_model, device="cpu", options=SegmentOptions(mode="out"))
    seen = []
    outcomes = engine.run_many(jobs, on_outcome=lambda k, n, o: seen.append((k, n, o.status)))
    assert seen == [(1, 2, "ok"), (2, 2, "failed")]
    ok, bad = outcomes
    assert ok.outputs["mask"].exists() and ok.outputs["report"].exists()
    assert bad.exit_code == EXIT_INPUT and bad.error and not bad.outputs["mask"].exists()
    assert not (tmp_path / "out" / "broken").exists() or not any((tmp_path / "out" / "broken").iterdir())
    # resume: the finished study is skipped with the volumes of its report, the broken one retried
    again = engine.run_many(jobs, resume=True)
    assert [o.status for o in again] == ["skipped", "failed"]
    assert again[0].volumes_ml == pytest.approx(ok.volumes_ml, abs=1e-3)
    # the summary row says how much of the infarct volume was flagged as CSF-dark where it knows
    assert isinstance(ok.row()["dark_infarct_ml"], float) and ok.row()["dark_infarct_ml"] <= ok.volumes_ml["infarct"] + 1e-3
    assert again[0].row()["dark_infarct_ml"] == "" and bad.row()["dark_infarct_ml"] == ""


def test_summary_csv_carries_the_flagged_infarct_volume():
    import csv
    import io

    from sdpm_cli.engine import StudyOutcome, summary_csv

    rows = list(csv.DictReader(io.StringIO(summary_csv([
        StudyOutcome("ge", "ok", volumes_ml={"infarct": 21.2741, "hemorrhage": 0.0}, dark_infarct_ml=21.2741),
        StudyOutcome("demo", "ok", volumes_ml={"infarct": 0.0, "hemorrhage": 24.39}, dark_infarct_ml=0.0),
    ]))))
    assert [(r["study"], r["infarct_ml"], r["dark_infarct_ml"]) for r in rows] == [("ge", "21.274", "21.274"), ("demo", "0.0", "0.0")]


def test_a_job_refuses_colliding_outputs_before_any_work(tiny_model, studies, tmp_path):
    engine = Engine(tiny_model, device="cpu", options=SegmentOptions(mode="out"))
    clash = StudyJob("s", studies["study0"], {"mask": tmp_path / "a.nii.gz", "probabilities": tmp_path / "a.nii.gz"})
    with pytest.raises(UsageError, match="same file"):
        engine.run_study(clash)
    with pytest.raises(UsageError, match="--dicom-sr needs --dicom-seg"):
        engine.run_study(StudyJob("s", studies["study0"], {"mask": tmp_path / "m.nii.gz", "dicom_sr": tmp_path / "sr.dcm"}))
    assert not list(tmp_path.iterdir())
    assert study_outputs(Path("/d"), {"report": "r.json"}) == {"mask": Path("/d/mask.nii.gz"), "report": Path("/d/r.json")}


def test_the_segmentation_carries_the_brain_mask_preprocessing_used(tiny_model, studies):
    """The report's lesion locations reuse it instead of extracting the brain again: it must be the
    skull-based mask of the model's plan, on the study's grid."""
    import numpy as np
    import SimpleITK as sitk

    from sdpm_cli.ingest import load_study
    from sdpm_cli.preprocess import brain_mask_array

    engine = Engine(tiny_model, device="cpu", options=SegmentOptions(mode="out"))
    study = load_study(studies["study0"])
    seg = engine.segment(study)
    assert seg.brain is not None and seg.brain.GetSize() == study.image.GetSize()
    assert seg.brain.GetOrigin() == study.image.GetOrigin() and seg.brain.GetDirection() == study.image.GetDirection()
    want = brain_mask_array(sitk.GetArrayViewFromImage(study.image), study.image.GetSpacing(), engine.model.plan)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg.brain), want)


def test_a_model_s_caveat_is_a_warning_wherever_it_is_loaded(tiny_model, tmp_path):
    from sdpm_cli.model.checkpoint import update_header

    assert Engine(tiny_model, device="cpu").warnings == []  # a model that says nothing of its use
    said = update_header(tiny_model, {"validation": {"intended_use": "research", "caveat": "phantoms only"}},
                         out=tmp_path / "said.pt")
    engine = Engine(said, device="cpu")
    assert engine.warnings == ["model tiny-test: phantoms only"]
    assert engine.model.validation.intended_use == "research"
