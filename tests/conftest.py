"""Shared test fixtures. Tests run on CPU; keep each one seconds, mark end-to-end ones `slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two xdist workers share two cores: one thread each keeps them from fighting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]


def _shared_fixtures() -> Path | None:
    env = os.environ.get("SDPM_SHARED_FIXTURES")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "fixtures", REPO / "shared" / "fixtures"]:
        if (cand / "dcm_qa_ct").is_dir():
            return cand / "dcm_qa_ct"
    return None


@pytest.fixture(scope="session")
def dcm_qa_ct() -> Path:
    """Real scanner DICOM (BSD licence) from ../shared/fixtures; skips cleanly where absent."""
    p = _shared_fixtures()
    if p is None:
        pytest.skip("../shared/fixtures/dcm_qa_ct is absent")
    return p


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from sdpm_cli.cli import app

    def _run(*args: str):
        runner = CliRunner()
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return _run
