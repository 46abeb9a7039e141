"""What reaches the console and the disk around the work: file text shown as one literal line,
batch resume after a kill, outputs that are one file, folders that cannot take a file.

Every refusal here must come before the model is loaded: the tests pass a missing checkpoint
where they can, so a refusal that came too late would exit 4 (model) instead of 2 (usage).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared DICOM factory
from ingest.dicom_factory import write_series  # noqa: E402

# tiny_model and studies: tests/commands/conftest.py
ODD = "HEAD [/] w/o\nCONTRAST [bold]x"  # markup that crashes rich, and a newline that splits a line
ODD_SHOWN = "HEAD [/] w/o\\nCONTRAST [bold]x"  # how the console shows it: literal, one line


def lines(text: str) -> list[str]:
    return text.splitlines()


# ------------------------------------------------------------------------------ A. console text
def test_refusal_naming_an_odd_series_description_is_one_literal_line(run_cli, tmp_path):
    study = tmp_path / "study"
    write_series(study, n_slices=6, description=ODD)  # refused: too few slices, naming the series
    code, out, err = run_cli("convert", study, "--out", tmp_path / "x.nii.gz")
    assert code == 3, err
    assert len(lines(err)) == 1 and err.startswith("error: ") and ODD_SHOWN in err, err
    assert "MarkupError" not in err and "only 6 slices" in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_warning_keeps_bracketed_text_and_result_line_stays_one_line(run_cli, tmp_path):
    study = tmp_path / "study"
    write_series(study, description=ODD, contrast="[w/o] IODINE [/] :cross_mark:")
    code, out, err = run_cli("convert", study, "--out", tmp_path / "x.nii.gz")
    assert code == 0, err
    warning = [ln for ln in lines(err) if ln.startswith("warning:")]
    assert len(warning) == 1 and "contrast agent recorded ([w/o] IODINE [/] :cross_mark:)" in warning[0], err
    series_line = [ln for ln in lines(out) if ln.startswith("series")]
    assert len(series_line) == 1 and ODD_SHOWN in series_line[0], out
    code, out, err = run_cli("series", study)
    assert code == 0, err
    assert len(lines(out)) == 3 and ODD_SHOWN in out  # header, the one series, the "ignored" line


def test_batch_progress_line_is_one_line_and_the_summary_keeps_the_text_verbatim(run_cli, tiny_model, tmp_path):
    parent = tmp_path / "incoming"
    write_series(parent / "odd", n_slices=6, description=ODD)
    out = tmp_path / "results"
    code, _, err = run_cli("segment", "--batch", parent, "--out-dir", out, "--model", tiny_model)
    assert code == 6, err
    progress = [ln for ln in lines(err) if ln.startswith("[1/1]")]
    assert len(progress) == 1 and ODD_SHOWN in progress[0] and "MarkupError" not in err, err
    assert len(lines(err)) == 2  # the study's line and the batch summary line, nothing split
    row = next(csv.DictReader((out / "summary.csv").open()))
    assert row["exit_code"] == "3" and ODD in row["error"]  # files keep the text as the DICOM has it


# ------------------------------------------------------------------------------ B. batch resume
def test_continue_after_a_kill_redoes_the_unfinished_study_and_keeps_finished_volumes(run_cli, tiny_model, studies,
                                                                                      tmp_path):
    parent = tmp_path / "incoming"
    parent.mkdir()
    for name in ("study0", "study1"):
        (parent / studies[name].name).symlink_to(studies[name])
    out = tmp_path / "results"
    args = ("segment", "--batch", parent, "--out-dir", out, "--model", tiny_model, "--mode", "out")
    code, _, err = run_cli(*args, "--report", "report.json")
    assert code == 0, err
    first = {r["study"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert all(first[s]["hemorrhage_ml"] != "" for s in first)

    # a kill during study1's outputs: its report is in place, its mask (renamed last) is not, and a
    # temporary is left behind
    (out / "study1" / "mask.nii.gz").unlink()
    stale_report = (out / "study1" / "report.json").read_text()
    (out / "study1" / "report.json").write_text(stale_report.replace('"volumes"', '"stale": 1, "volumes"'))
    leftover = out / "study1" / ".mask.nii.gz.dead.part.nii.gz"
    leftover.write_bytes(b"partial")
    code, _, err = run_cli(*args, "--report", "report.json", "--continue")
    assert code == 0, err
    rows = {r["study"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["study0"]["status"] == "skipped" and rows["study1"]["status"] == "ok"
    for col in ("infarct_ml", "hemorrhage_ml"):  # the skipped study's volumes carried over from its report
        assert rows["study0"][col] == first["study0"][col] != ""
        assert rows["study1"][col] == first["study1"][col]  # same seed: the same answer again
    assert (out / "study1" / "mask.nii.gz").exists() and not leftover.exists()
    assert "stale" not in json.loads((out / "study1" / "report.json").read_text())

    # without a report, the volumes are measured on the finished mask
    code, _, err = run_cli(*args, "--continue")
    assert code == 0, err
    rows = {r["study"]: r for r in csv.DictReader((out / "summary.csv").open())}
    for s in ("study0", "study1"):
        assert rows[s]["status"] == "skipped"
        assert float(rows[s]["hemorrhage_ml"]) == pytest.approx(float(first[s]["hemorrhage_ml"]), abs=1e-3)
        mask = sitk.ReadImage(str(out / s / "mask.nii.gz"))
        ml = np.count_nonzero(sitk.GetArrayFromImage(mask) == 2) * np.prod(mask.GetSpacing()) / 1000
        assert float(rows[s]["hemorrhage_ml"]) == pytest.approx(ml, abs=1e-3)

    # without --continue, the finished outputs are still never overwritten without --force
    code, _, err = run_cli(*args, "--report", "report.json")
    assert code == 6 and "output exists" in err


# ------------------------------------------------------------------------------ C. one file, two outputs
def test_two_outputs_that_are_one_file_are_refused_before_any_work(run_cli, studies, tmp_path, monkeypatch):
    missing_model = tmp_path / "missing.pt"  # loading it would exit 4: a 2 proves the check came first
    p = tmp_path / "p.nii.gz"
    code, _, err = run_cli("segment", studies["study0"], "--model", missing_model, "--out", p, "--probabilities", p)
    assert code == 2 and len(lines(err)) == 1 and "--out and --probabilities are the same file" in err, err
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)  # a relative path and a symlinked folder naming one file
    code, _, err = run_cli("segment", studies["study0"], "--model", missing_model, "--out", "real/m.nii.gz",
                           "--preview", link / ".." / "link" / "m.nii.gz")
    assert code == 2 and "--out and --preview" in err, err
    assert list(real.iterdir()) == []
    # an output onto the input study, even with --force
    code, _, err = run_cli("segment", studies["study0"], "--model", missing_model, "--out", studies["study0"], "--force")
    assert code == 2 and "the input study and --out" in err, err
    # batch: every study folder would get mask.nii.gz twice
    code, _, err = run_cli("segment", studies["study0"], "--out-dir", tmp_path / "res", "--model", missing_model,
                           "--report", "mask.nii.gz")
    assert code == 2 and "same file" in err, err
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------------------ D. folders that cannot take a file
def test_output_under_a_regular_file_is_refused_before_any_work(run_cli, studies, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    missing_model = tmp_path / "missing.pt"
    code, _, err = run_cli("segment", studies["study0"], "--model", missing_model, "--out", tmp_path / "m.nii.gz",
                           "--report", blocker / "sub" / "r.json")
    assert code == 2 and len(lines(err)) == 1 and "is not a folder" in err, err
    assert not (tmp_path / "m.nii.gz").exists()
    code, _, err = run_cli("segment", studies["study0"], "--out-dir", blocker / "results", "--model", missing_model)
    assert code == 2 and len(lines(err)) == 1 and "is not a folder" in err, err


def test_read_only_output_folder_is_refused_before_any_work(run_cli, studies, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        missing_model = tmp_path / "missing.pt"
        code, _, err = run_cli("segment", studies["study0"], "--model", missing_model, "--out", locked / "m.nii.gz")
        assert code == 2 and len(lines(err)) == 1 and "not writable" in err, err
        code, _, err = run_cli("segment", studies["study0"], "--out-dir", locked, "--model", missing_model)
        assert code == 2 and "not writable" in err, err
    finally:
        locked.chmod(0o755)
