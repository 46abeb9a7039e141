"""Labels from a teacher (train.distill): which channels change, to what, and what a run records."""

from __future__ import annotations

import pytest
import torch

from sdpm_cli.errors import UsageError
from sdpm_cli.model.diffusion import sigmoid_schedule
from sdpm_cli.train import train
from sdpm_cli.train.distill import class_channels, teacher_labels

from tests.train.test_loop import tiny_config


class _Teacher(torch.nn.Module):
    """A network whose noise head says 0 and whose label head says `value` everywhere."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.seen_t: list = []

    def forward(self, x, t, need_label=True, cond=None):
        self.seen_t.append(t.clone())
        return torch.zeros_like(x), torch.full((x.shape[0], 2, *x.shape[2:]), self.value)


def test_teacher_replaces_only_its_classes_with_its_clean_answer():
    sched = sigmoid_schedule(500)
    x0 = torch.zeros(2, 1, 4, 4)
    y0 = torch.full((2, 2, 4, 4), -1.0)
    y0[:, 1, 1:3, 1:3] = 1.0  # truth: a bleed
    brain = torch.ones(2, 4, 4, dtype=torch.bool)
    brain[:, 0] = False
    teacher = _Teacher(0.25)
    out = teacher_labels(teacher, sched, x0, y0, class_channels(["infarct"]), brain)
    assert torch.equal(teacher.seen_t[0], torch.zeros(2, dtype=torch.long))  # the `out` answer: t = 0
    # eps_hat = 0 at t = 0: y0_hat = y_t_hat / sqrt(abar_0), clamped to [-1, 1]; -1 outside the brain
    expect = min(1.0, 0.25 / float(sched.sqrt_abar[0]))
    assert torch.allclose(out[:, 0, 1:], torch.full_like(out[:, 0, 1:], expect))
    assert torch.equal(out[:, 0, 0], torch.full_like(out[:, 0, 0], -1.0))
    assert torch.equal(out[:, 1], y0[:, 1])  # the other class keeps its truth
    assert torch.equal(y0[:, 0], torch.full_like(y0[:, 0], -1.0))  # the input is not changed
    loud = teacher_labels(_Teacher(5.0), sched, x0, y0, [0, 1])
    assert float(loud.max()) == 1.0  # clamped as at inference


def test_unknown_class_and_a_lone_option_are_refused(tiny_dataset, tmp_path):
    with pytest.raises(UsageError, match="unknown class oedema"):
        class_channels(["oedema"])
    with pytest.raises(UsageError, match="go together"):
        tiny_config(tiny_dataset, tmp_path, teacher_classes=["infarct"]).validate()


def test_a_run_with_a_teacher_records_it_and_refuses_a_changed_one(tiny_dataset, tmp_path):
    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.train.loop import teacher_settings

    train(tiny_config(tiny_dataset, tmp_path / "t", steps=4))
    teacher = tmp_path / "t" / "model.pt"
    _, t_head = load_checkpoint(teacher)
    settings = teacher_settings(teacher, "infarct")
    assert settings == {"teacher": str(teacher), "teacher_classes": ["infarct"], "teacher_sha256": t_head["sha256"]}
    res = train(tiny_config(tiny_dataset, tmp_path / "s", steps=4, ckpt_every=2, **settings))
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in res.losses)
    _, head = load_checkpoint(tmp_path / "s" / "model.pt")
    assert head["training"]["teacher"] == {"name": "model.pt", "sha256": t_head["sha256"], "classes": ["infarct"]}
    # a teacher whose weights changed after the run started: the run's labels would change, refused
    changed = dict(settings, teacher_sha256="0" * 64)
    with pytest.raises(UsageError, match="teacher model changed"):
        train(tiny_config(tiny_dataset, tmp_path / "u", steps=2, **changed))
    # another architecture may teach; a teacher that reads the head on another grid may not
    wide = tmp_path / "w"
    train(tiny_config(tiny_dataset, wide, steps=2, net={**tiny_config(tiny_dataset, wide).net, "widths": [4, 8], "decoder_widths": [4, 8]}))
    train(tiny_config(tiny_dataset, tmp_path / "v", steps=2, **teacher_settings(wide / "model.pt", "infarct")))
    coarse = tmp_path / "c"
    train(tiny_config(tiny_dataset, coarse, steps=2, plan={"spacing_mm": 6.0, "size": 32}))
    with pytest.raises(UsageError, match="teacher's preprocessing plan differs"):
        train(tiny_config(tiny_dataset, tmp_path / "x", steps=2, **teacher_settings(coarse / "model.pt", "infarct")))
