"""The inference configuration is data that needs no torch (model.inference)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sdpm_cli.errors import UsageError
from sdpm_cli.model.diffusion import step_indices
from sdpm_cli.model.inference import PRESETS, calls_per_slice, chain_length, make_config


def test_chain_length_is_the_length_of_the_chain():
    for t in (0, 1, 2, 24, 61, 249, 499):
        for steps in (None, 1, 2, 3, 5, 25, 50, 250, 600):
            assert chain_length(t, steps) == len(step_indices(t, steps)), (t, steps)


def test_call_counts_of_the_presets():
    fast = calls_per_slice(make_config("union", "fast"), 500)
    assert fast == {"out": 1, "salient": 8, "infer": 8, "union": 17}
    paper = calls_per_slice(PRESETS["paper"], 500)
    assert paper["salient"] == 100 * 62 and paper["infer"] == 50 * 250 and paper["union"] == 18701


def test_a_margin_threshold_above_the_gate_is_refused():
    assert make_config("union", gate_margin_threshold=0.25).gate_margin_threshold == 0.25
    for bad in (-0.1, make_config("union").gate_threshold + 0.05):
        with pytest.raises(UsageError, match="gate_margin_threshold"):
            make_config("union", gate_margin_threshold=bad)


def test_configuring_a_run_imports_no_torch():
    code = ("import sys\nfrom sdpm_cli.model.inference import make_config, calls_per_slice\n"
            "calls_per_slice(make_config('union', 'fast'), 500)\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
