import subprocess
import sys
from pathlib import Path

from sdpm_cli import __version__


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out


def test_python_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "sdpm_cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and __version__ in res.stdout


def test_info_needs_no_gpu_or_weights(run_cli):
    code, out, _ = run_cli("info", "--json")
    assert code == 0
    assert "1.2.840.10008.1.2.4.70" in out  # JPEG Lossless listed
    assert '"devices"' in out
    import json

    from sdpm_cli.model.registry import default_model_path

    if default_model_path() is not None:  # the shipped model says what it may be used for
        assert "not for clinical decisions" in json.loads(out)["default_model_caveat"]


def test_unknown_command_is_usage_error(run_cli):
    code, _, _ = run_cli("no-such-command")
    assert code == 2


def test_one_line_escapes_control_characters_and_keeps_markup_literal():
    from sdpm_cli.cli import one_line

    assert one_line("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert one_line("x\x1b[31my\u2028z\u202e") == "x\\x1b[31my\\u2028z\\u202e"
    assert one_line("[bold]HEAD[/] w/o [w/o] :smile:") == "[bold]HEAD[/] w/o [w/o] :smile:"
    assert one_line("DERIVED\\SECONDARY ünïcode") == "DERIVED\\SECONDARY ünïcode"


def _odd_nifti(path):
    """A NIfTI whose sform scales disagree with its qform: ITK's reader prints a WARNING about it."""
    import struct

    import numpy as np
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(path))
    raw = bytearray(path.read_bytes())
    raw[280:296] = struct.pack("<4f", 2.0, 0.0, 0.0, 0.0)  # srow_x: a 2 mm scale the qform does not have
    path.write_bytes(bytes(raw))
    return path


def test_itk_messages_stay_off_stderr_in_a_normal_run(tmp_path):
    nii = _odd_nifti(tmp_path / "odd.nii")
    res = subprocess.run([sys.executable, "-m", "sdpm_cli", "volume", str(nii), "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "WARNING" not in res.stderr and "NiftiImageIO" not in res.stderr and res.stderr == ""
    res = subprocess.run([sys.executable, "-m", "sdpm_cli", "--debug", "volume", str(nii), "--json"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    itk = [ln for ln in res.stderr.splitlines() if ln.startswith("debug: sdpm_cli.itk: ")]
    assert itk and all("unexpected scales in sform" in ln for ln in itk), res.stderr  # one line per message


def test_debug_turns_on_the_package_debug_log_and_a_normal_run_does_not(run_cli, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/, for the shared DICOM factory
    from ingest.dicom_factory import write_series

    write_series(tmp_path / "study", padding_value=0)  # the reader logs how many padding pixels it set to air
    code, _, err = run_cli("--debug", "convert", tmp_path / "study", "--out", tmp_path / "a.nii.gz")
    assert code == 0, err
    assert any(ln.startswith("debug: sdpm_cli.ingest.volume: ") and "padding" in ln for ln in err.splitlines()), err
    code, _, err = run_cli("convert", tmp_path / "study", "--out", tmp_path / "b.nii.gz")  # same process, no --debug
    assert code == 0, err
    assert "debug:" not in err
