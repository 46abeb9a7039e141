"""The slice-parallel stages give the same answer on any number of threads, and --threads bounds them."""

from __future__ import annotations

import numpy as np
import pytest

from sdpm_cli import threads


@pytest.fixture
def restore_threads():
    threads.set_cpu_threads(0)  # an in-process CLI test (--threads 1) may have set the bound before
    yield
    threads.set_cpu_threads(0)


def test_map_slices_keeps_order_and_the_bound(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.cpu_threads() == 3
    threads.set_cpu_threads(2)
    assert threads.cpu_threads() == 2
    assert threads.map_slices(lambda z: z * z, range(50)) == [z * z for z in range(50)]
    assert threads.map_slices(lambda z: z, []) == []
    threads.set_cpu_threads(0)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.cpu_threads() >= 1


def test_brain_mask_and_resampling_do_not_depend_on_the_thread_count(restore_threads):
    from sdpm_cli.preprocess import PreprocessPlan, prepare
    from sdpm_cli.synth import SynthConfig, generate_case

    case = generate_case(3, SynthConfig(matrix=128, lesion="hemorrhage"))
    got = []
    for n in (1, 2, 3):
        threads.set_cpu_threads(n)
        p = prepare(case.image, PreprocessPlan(spacing_mm=2.5, size=96))
        got.append((p.x.copy(), np.asarray(p.brain).copy(), p.brain_volume_ml))
    for x, brain, ml in got[1:]:
        np.testing.assert_array_equal(x, got[0][0])
        np.testing.assert_array_equal(brain, got[0][1])
        assert ml == got[0][2]
    assert got[0][1].any()


def test_threads_option_sets_both_bounds(restore_threads):
    import torch

    from sdpm_cli.commands.options import apply_threads

    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1 and threads.cpu_threads() == 1
    finally:
        torch.set_num_threads(before)
