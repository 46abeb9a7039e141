import subprocess
import sys

from sdpm_cli import __version__


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out


def test_python_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "sdpm_cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and __version__ in res.stdout


def test_info_needs_no_gpu_or_weights(run_cli):
    code, out, _ = run_cli("info", "--json-out")
    assert code == 0
    assert "1.2.840.10008.1.2.4.70" in out  # JPEG Lossless listed
    assert '"devices"' in out


def test_unknown_command_is_usage_error(run_cli):
    code, _, _ = run_cli("no-such-command")
    assert code == 2
