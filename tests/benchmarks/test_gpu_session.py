"""benchmarks/device/gpu_session.py: the cases it prepares in parallel are the ones `sdpm train` looks up.

A GPU session has minutes; if the plan it prepares the cache with differed from the plan training
derives from its options, training would prepare every case again, serially, inside the budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from sdpm_cli.errors import UsageError
from sdpm_cli.preprocess import PreprocessPlan
from sdpm_cli.train.loop import TrainConfig, apply_init

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "device"))

import gpu_session as gs  # noqa: E402

SHIPPED = REPO / "models" / "sdpm-default.pt"


def _args(context: int, mirror: bool, init: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(context_slices=context, mirror_channel=mirror, rotate_deg=15.0, init=init)


@pytest.mark.parametrize("context,mirror", [(0, False), (1, False), (2, False), (0, True), (1, True)])
def test_from_scratch_the_prepared_plan_is_the_trained_one(context, mirror):
    a = _args(context, mirror)
    # what `sdpm train` puts in its config for these options without --init (commands/train.py)
    plan = {**({"mirror_channel": True} if mirror else {}), **({"context_slices": context} if context else {})}
    assert gs.train_plan(a) == PreprocessPlan.from_dict(plan)


def _shipped_context() -> int:
    from sdpm_cli.model.checkpoint import read_header

    return int(read_header(SHIPPED)["preprocess"].get("context_slices", 0))


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped model")
@pytest.mark.parametrize("context", [0, 1, 3])
def test_fine_tuning_the_prepared_plan_is_the_one_apply_init_derives(context):
    a = _args(context, False, str(SHIPPED))
    k = _shipped_context()  # the neighbours the shipped model already reads (1 since 2026-12-07)
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), "init": str(SHIPPED),
                                 "plan": {"context_slices": context} if context else {}})
    if k and context and context != k:
        # a model's number of neighbours is fixed: training refuses, and so does the session, before any work
        with pytest.raises(UsageError, match="neighbouring slices"):
            apply_init(cfg)
        with pytest.raises(UsageError, match="neighbouring slices"):
            gs.train_plan(a)
        return
    plan = gs.train_plan(a)
    assert plan == PreprocessPlan.from_dict(apply_init(cfg).plan)
    assert plan.context_slices == (context or k)  # 0 asks for nothing: the model's own


def test_the_recipe_reaches_the_training_command():
    a = _args(1, True)
    a.data_dir, a.batch, a.patch, a.width, a.lr, a.lr_min, a.lesion_fraction = "d", 32, 112, 32, 1e-3, 6e-5, 0.4
    a.cache, a.device = "c", "cuda"
    cmd = gs._train_cmd(a, Path("m.pt"), 10, [])
    assert cmd[cmd.index("--context-slices") + 1] == "1"
    assert cmd[cmd.index("--rotate-deg") + 1] == "15.0"
    assert "--mirror-channel" in cmd and "--init" not in cmd
