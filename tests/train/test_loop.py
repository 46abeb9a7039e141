"""The training loop: poly schedule and EMA against closed forms, loss goes down, resume is exact."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sdpm_cli.errors import ModelError, UsageError
from sdpm_cli.train import EMA, TrainConfig, poly_lr, train

TINY_NET = {"widths": [8, 16], "decoder_widths": [8, 16], "time_dim": 16, "groups": 4}


def tiny_config(data, tmp_path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(tmp_path / "model.pt"), steps=12, batch=4, patch=16, lr_init=1e-2,
                val_fraction=0.0, ckpt_every=0, val_every=0, threads=1, plan={"spacing_mm": 5.0, "size": 32},
                net=TINY_NET)
    base.update(kw)
    return TrainConfig(**base)


def test_poly_schedule_closed_form():
    a, b = 1e-4, 6e-5
    assert poly_lr(0, 100, a, b) == a
    assert math.isclose(poly_lr(100, 100, a, b), b)
    assert math.isclose(poly_lr(50, 100, a, b), (a + b) * 0.5**0.9)
    assert math.isclose(poly_lr(25, 100, a, b), a * 0.75**0.9 + b * 0.25**0.9)
    assert poly_lr(250, 100, a, b) == poly_lr(100, 100, a, b)  # clamped past the end


def test_ema_follows_the_warmed_up_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, decay=0.9)
    expected = 0.0
    for i in range(30):
        with torch.no_grad():
            net.weight.fill_(float(i + 1))
        ema.update(net)
        d = min(0.9, (1 + i) / (10 + i))
        expected = d * expected + (1 - d) * (i + 1)
        assert math.isclose(float(ema.model.weight), expected, rel_tol=1e-6)


def _fixed_batch_loss(net, cfg: TrainConfig, data) -> float:
    """The loss on one fixed batch, t and noise: a noise-free yardstick for 'the model learned'."""
    from sdpm_cli.model.diffusion import sigmoid_schedule
    from sdpm_cli.model.losses import LossWeights, sdpm_losses
    from sdpm_cli.preprocess import PreprocessPlan
    from sdpm_cli.train.augment import labels_to_pm1
    from sdpm_cli.train.data import PatchSampler, find_cases, load_case, stack_cases

    slices = stack_cases([load_case(c, PreprocessPlan(**cfg.plan)) for c in find_cases(data)])
    x, lab, _ = PatchSampler(slices, 16, 0.5, seed=123).sample(64)
    g = torch.Generator().manual_seed(7)
    sched = sigmoid_schedule(cfg.T)
    t = torch.randint(0, sched.T, (64,), generator=g)
    eps = torch.randn((64, 1, 16, 16), generator=g)
    with torch.no_grad():
        return float(sdpm_losses(net.eval(), torch.from_numpy(x), labels_to_pm1(torch.from_numpy(lab)), sched,
                                 LossWeights(), t=t, eps=eps)["total"])


def test_a_few_steps_reduce_the_loss(tiny_dataset, tmp_path):
    from sdpm_cli.model.network import NetConfig, SDPMNet

    cfg = tiny_config(tiny_dataset, tmp_path, steps=40, ema_decay=0.9)
    torch.manual_seed(cfg.seed)
    before = _fixed_batch_loss(SDPMNet(NetConfig.from_dict(cfg.net)), cfg, tiny_dataset)
    res = train(cfg)
    after = _fixed_batch_loss(res.net, cfg, tiny_dataset)
    assert res.finished and res.steps_done == 40 and len(res.losses) == 40
    assert after < 0.8 * before, (before, after)
    assert res.losses[0]["lr"] == cfg.lr_init and res.losses[-1]["lr"] < cfg.lr_init


def test_resume_continues_bit_for_bit(tiny_dataset, tmp_path):
    straight = train(tiny_config(tiny_dataset, tmp_path / "a", steps=10))
    first = train(tiny_config(tiny_dataset, tmp_path / "b", steps=10, ckpt_every=3, log=str(tmp_path / "b.jsonl")), stop_after=5)
    assert not first.finished and first.out is None and first.state.is_file() and first.steps_done == 5
    assert not (tmp_path / "b" / "model.pt").exists()
    second = train(tiny_config(tiny_dataset, tmp_path / "b", steps=10, ckpt_every=3, log=str(tmp_path / "b.jsonl")),
                   resume=first.state)
    assert second.finished and [r["total"] for r in second.losses] == [r["total"] for r in straight.losses]
    sa, sb = straight.net.state_dict(), second.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    logged = [json.loads(s) for s in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "total" in r] == list(range(1, 11))


def test_resume_refuses_changed_settings_and_foreign_files(tiny_dataset, tmp_path):
    first = train(tiny_config(tiny_dataset, tmp_path, steps=6), stop_after=2)
    with pytest.raises(UsageError, match=r"settings differ from the checkpoint's \(batch, lr_init\)"):
        train(tiny_config(tiny_dataset, tmp_path, steps=6, batch=2, lr_init=1e-3), resume=first.state)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable training-state checkpoint"):
        train(tiny_config(tiny_dataset, tmp_path, steps=6), resume=junk)
    with pytest.raises(UsageError, match="no such training-state file"):
        train(tiny_config(tiny_dataset, tmp_path, steps=6), resume=tmp_path / "missing.pt")


def test_init_fine_tunes_from_a_model_and_records_it(tiny_dataset, tmp_path):
    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.train.loop import apply_init

    base = train(tiny_config(tiny_dataset, tmp_path / "a", steps=8))
    init_path = tmp_path / "a" / "model.pt"
    _, init_head = load_checkpoint(init_path)
    # architecture, plan and T come from the init model, not from the run's (empty) settings
    cfg = apply_init(tiny_config(tiny_dataset, tmp_path / "b", steps=4, net={}, plan={}, init=str(init_path)))
    assert cfg.net == init_head["architecture"] and cfg.plan == init_head["preprocess"]
    assert cfg.init_sha256 == init_head["sha256"]
    # zero learning rate: the fine-tuned weights are exactly the init weights (EMA of constants)
    frozen = train(apply_init(tiny_config(tiny_dataset, tmp_path / "c", steps=3, lr_init=1e-30, lr_min=0.0,
                                          init=str(init_path))))
    sa, sb = base.net.state_dict(), frozen.net.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)
    _, head = load_checkpoint(tmp_path / "c" / "model.pt")
    assert head["training"]["init"] == {"name": "model.pt", "sha256": init_head["sha256"]}
    with pytest.raises(UsageError, match="cannot remove channels"):
        apply_init(tiny_config(tiny_dataset, tmp_path / "d", init=str(init_path), net={"widths": [4, 8], "decoder_widths": [4, 8]}))
    with pytest.raises(UsageError, match="only --width can grow it"):
        apply_init(tiny_config(tiny_dataset, tmp_path / "d", init=str(init_path), net={"time_dim": 32}))
    with pytest.raises(ModelError, match="not found"):
        apply_init(tiny_config(tiny_dataset, tmp_path / "d", init=str(tmp_path / "missing.pt")))


def _segments_a_training_image(lm, tiny_dataset) -> None:
    """The loaded model segments a training image through the pipeline, on that image's grid."""
    import SimpleITK as sitk

    from sdpm_cli.pipeline import segment_study

    class _Study:
        image = sitk.ReadImage(str(next((tiny_dataset / "imagesTr").iterdir())))
        warnings: list = []

        class series:
            uid = "1.2.3"

    seg = segment_study(_Study(), model=lm, mode="out", seed=0)
    assert sitk.GetArrayFromImage(seg.labels).shape == sitk.GetArrayFromImage(_Study.image).shape


def test_mirror_channel_trains_segments_and_can_be_added_to_a_model(tiny_dataset, tmp_path):
    """--mirror-channel: a model trained with the mirror image as a second input segments through
    the pipeline; added to a model trained without it, training starts from exactly that model."""
    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.pipeline import load_model
    from sdpm_cli.train.loop import apply_init

    mirror = train(tiny_config(tiny_dataset, tmp_path / "m", steps=4, plan={"spacing_mm": 5.0, "size": 32, "mirror_channel": True},
                               net={**TINY_NET, "cond_channels": 1}))
    assert mirror.net.cfg.cond_channels == 1
    lm, _ = load_model(tmp_path / "m" / "model.pt", "cpu")
    assert lm.plan.mirror_channel

    _segments_a_training_image(lm, tiny_dataset)
    with pytest.raises(UsageError, match="conditioning channel"):
        train(tiny_config(tiny_dataset, tmp_path / "bad", steps=1, plan={"spacing_mm": 5.0, "size": 32, "mirror_channel": True}))

    base = train(tiny_config(tiny_dataset, tmp_path / "a", steps=4))
    init = tmp_path / "a" / "model.pt"
    cfg = apply_init(tiny_config(tiny_dataset, tmp_path / "b", steps=3, net={}, plan={"mirror_channel": True},
                                 init=str(init), lr_init=1e-30, lr_min=0.0))
    assert cfg.net["cond_channels"] == 1 and cfg.plan["mirror_channel"] is True
    widened = train(cfg)
    sa, sb = base.net.state_dict(), widened.net.state_dict()
    stem = "encoder.stem.weight"
    assert torch.allclose(sb[stem][:, :1], sa[stem], atol=1e-6) and bool(sb[stem][:, 1:].abs().max() < 1e-20)  # Adam moves 1e-30 lr steps by ~1e-30
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa if k != stem)
    _, head = load_checkpoint(tmp_path / "b" / "model.pt")
    assert head["preprocess"]["mirror_channel"] is True and head["architecture"]["cond_channels"] == 1


def test_context_slices_can_be_added_to_a_model_and_segment(tiny_dataset, tmp_path):
    """--context-slices 1 on a model trained without it: two zero stem channels, so training starts
    from exactly that model; the result reads its neighbours through the pipeline. A mirror channel
    cannot be added after them (its channel comes first)."""
    from sdpm_cli.pipeline import load_model
    from sdpm_cli.train.loop import apply_init

    base = train(tiny_config(tiny_dataset, tmp_path / "a", steps=4))
    init = tmp_path / "a" / "model.pt"
    cfg = apply_init(tiny_config(tiny_dataset, tmp_path / "b", steps=3, net={}, plan={"context_slices": 1},
                                 init=str(init), lr_init=1e-30, lr_min=0.0))
    assert cfg.net["cond_channels"] == 2 and cfg.plan["context_slices"] == 1
    widened = train(cfg)
    sa, sb = base.net.state_dict(), widened.net.state_dict()
    stem = "encoder.stem.weight"
    assert torch.allclose(sb[stem][:, :1], sa[stem], atol=1e-6) and bool(sb[stem][:, 1:].abs().max() < 1e-20)
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa if k != stem)
    lm, _ = load_model(tmp_path / "b" / "model.pt", "cpu")
    assert lm.plan.context_slices == 1

    _segments_a_training_image(lm, tiny_dataset)
    with pytest.raises(UsageError, match="mirror channel cannot be added"):
        apply_init(tiny_config(tiny_dataset, tmp_path / "c", net={}, plan={"mirror_channel": True},
                               init=str(tmp_path / "b" / "model.pt")))
    with pytest.raises(UsageError, match="number is fixed"):
        apply_init(tiny_config(tiny_dataset, tmp_path / "c", net={}, plan={"context_slices": 2},
                               init=str(tmp_path / "b" / "model.pt")))


def test_init_with_a_wider_network_starts_from_the_same_function(tiny_dataset, tmp_path):
    """--init with --width grows the init model exactly: a run that cannot move its weights ends with
    a wider network whose outputs are the init model's; the header records the widened architecture."""
    from sdpm_cli.model.checkpoint import load_checkpoint
    from sdpm_cli.train.loop import apply_init

    # decoder widths whose GroupNorm groups do not straddle a skip concatenation (as in the shipped
    # architecture); where one would, the widening is refused (tests/model/test_widen.py)
    base = train(tiny_config(tiny_dataset, tmp_path / "a", steps=6, net={**TINY_NET, "decoder_widths": [8, 8]}))
    init_path = tmp_path / "a" / "model.pt"
    cfg = apply_init(tiny_config(tiny_dataset, tmp_path / "w", steps=2, lr_init=1e-30, lr_min=0.0, init=str(init_path),
                                 net={"widths": [12, 24], "decoder_widths": [12, 12]}))
    assert cfg.net["widths"] == [12, 24] and cfg.net["groups"] == 6 and cfg.net["time_embed"] == 8
    wide = train(cfg)
    net, head = load_checkpoint(tmp_path / "w" / "model.pt")
    assert head["architecture"]["widths"] == [12, 24] and head["architecture"]["time_embed"] == 8
    assert sum(p.numel() for p in net.parameters()) > sum(p.numel() for p in base.net.parameters())
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 1, 32, 32, generator=g), torch.tensor([0, 40])
    with torch.no_grad():
        a, b = base.net.eval()(x, t), net.eval()(x, t)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)
    assert wide.steps_done == 2
