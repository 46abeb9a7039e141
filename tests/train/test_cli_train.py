"""`sdpm train`: refusals before any work, exit codes, and a short end-to-end run with resume."""

from __future__ import annotations

import json

import pytest

ARGS = ("--steps", "3", "--batch", "2", "--patch", "32", "--width", "4", "--threads", "1", "--no-progress")


def test_existing_output_is_refused_before_training(run_cli, tiny_dataset, tmp_path):
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    code, _, err = run_cli("train", tiny_dataset, "--out", out, *ARGS)
    assert code == 2 and "output exists" in err and "--force" in err
    assert out.read_bytes() == b"keep me" and not (tmp_path / "model.pt.state.pt").exists()


def test_bad_data_is_exit_3_with_a_reason(run_cli, tmp_path):
    (tmp_path / "notadataset").mkdir()
    code, _, err = run_cli("train", tmp_path / "notadataset", "--out", tmp_path / "m.pt", *ARGS)
    assert code == 3 and "no imagesTr/ and labelsTr/" in err and "Traceback" not in err
    code, _, err = run_cli("train", tmp_path / "missing", "--out", tmp_path / "m.pt", *ARGS)
    assert code == 3 and "does not exist" in err


def test_bad_options_are_usage_errors(run_cli, tiny_dataset, tmp_path):
    code, _, err = run_cli("train", tiny_dataset, "--out", tmp_path / "m.pt", *ARGS, "--amp", "fp8")
    assert code == 2 and "--amp" in err
    code, _, err = run_cli("train", tiny_dataset, "--out", tmp_path / "m.pt", *ARGS, "--resume", tmp_path / "none.pt")
    assert code == 2 and "no such training-state file" in err
    # --teacher: both halves or neither; a known class; refused before any training, no file written
    code, _, err = run_cli("train", tiny_dataset, "--out", tmp_path / "m.pt", *ARGS, "--teacher-classes", "infarct")
    assert code == 2 and "--teacher and --teacher-classes go together" in err
    code, _, err = run_cli("train", tiny_dataset, "--out", tmp_path / "m.pt", *ARGS, "--teacher", tmp_path / "t.pt",
                           "--teacher-classes", "oedema")
    assert code == 2 and "unknown class oedema" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.state.pt").exists()


@pytest.mark.slow
def test_train_stop_resume_and_load(run_cli, tiny_dataset, tmp_path):
    from sdpm_cli.model.checkpoint import load_checkpoint

    out, log = tmp_path / "model.pt", tmp_path / "log.jsonl"
    code, stdout, err = run_cli("train", tiny_dataset, "--out", out, *ARGS, "--val-fraction", "0.5",
                                "--log", log, "--stop-after", "2")
    assert code == 0, err
    state = tmp_path / "model.pt.state.pt"
    assert "stopped at step 2/3" in stdout and state.is_file() and not out.exists()
    code, stdout, err = run_cli("train", tiny_dataset, "--out", out, "--resume", state, "--log", log, "--no-progress")
    assert code == 0, err
    assert "model written" in stdout and out.is_file()
    net, header = load_checkpoint(out, map_location="cpu")
    tr = header["training"]
    assert tr["steps"] == 3 and tr["n_cases"] == 2 and tr["n_val_cases"] == 1 and tr["seed"] == 0
    assert tr["val_dice"] is not None and set(tr["final_losses"]) >= {"total", "eps"}
    assert "case_0000" not in json.dumps(header)  # no case names (they can identify patients)
    assert header["preprocess"]["size"] == 160
    rows = [json.loads(s) for s in log.read_text().splitlines()]
    assert [r["step"] for r in rows if "total" in r] == [1, 2, 3] and any(r.get("event") == "val" for r in rows)
