"""Inference modes and presets on a tiny model, closed-form checks with oracle networks, the
invariance of the synchronous chain, batching and determinism."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from sdpm_cli.errors import UsageError
from sdpm_cli.model.diffusion import coef, q_sample, sigmoid_schedule, step_indices
from sdpm_cli.model.network import NetConfig, SDPMNet
from sdpm_cli.model.runtime import TorchNetwork
from sdpm_cli.model.samplers import (
    PRESETS,
    NoiseStream,
    SliceNoise,
    calls_per_slice,
    make_config,
    predict,
    run_chain,
    salient_plan,
)
from sdpm_cli.modes import MODES

S40 = sigmoid_schedule(40)  # short schedule: the paper preset runs in a second on a tiny net
TINY = NetConfig(widths=(8, 16), decoder_widths=(8, 8), time_dim=16, groups=4)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = SDPMNet(TINY).eval()
    with torch.no_grad():  # push the label head towards the decision boundary so masks are non-trivial
        net.label_decoder.out.bias.fill_(0.0)
    return TorchNetwork(net)


def _image(B=2, n=16, seed=0):
    return (np.random.default_rng(seed).random((B, 1, n, n)) * 2 - 1).astype(np.float32)


class Counting:
    """Wraps a network and records every call (batch size, need_label)."""

    def __init__(self, net):
        self.net, self.calls, self.cpu = net, [], net.cpu

    def __call__(self, x_t, t, need_label, cond=None):
        self.calls.append((x_t.shape[0], need_label))
        return self.net(x_t, t, need_label, cond)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_preset_runs_and_counts_its_calls(tiny_net, preset, mode):
    x = _image()
    cfg = make_config(mode, preset, max_batch=512)
    net = Counting(tiny_net)
    pred = predict(net, S40, x, cfg, 0)
    C = TINY.num_classes
    assert pred.prob.shape == pred.spread.shape == (2, C, 16, 16)
    assert pred.prob.min() >= 0 and pred.prob.max() <= 1 and pred.spread.min() >= 0
    expect_modes = {"out", "salient", "infer", "union"} if mode == "union" else {mode}
    assert set(pred.masks) == expect_modes and all(m.dtype == bool for m in pred.masks.values())
    # n_calls is what actually ran: encoder passes per slice
    assert pred.n_calls == calls_per_slice(cfg, S40.T)[mode] == sum(b for b, _ in net.calls) // 2
    S = {"out": 1, "salient": cfg.salient_samples, "infer": cfg.infer_samples,
         "union": max(cfg.salient_samples, cfg.infer_samples)}[mode]
    assert pred.sample_counts.shape == (S, 2, C)
    assert pred.sample_counts_cleaned.shape == pred.sample_counts.shape
    assert np.all(pred.sample_counts_cleaned <= pred.sample_counts)
    if mode == "out":
        assert np.array_equal(pred.sample_counts[0], (pred.prob >= 0.5).reshape(*pred.prob.shape[:2], -1).sum(-1))
        assert np.array_equal(pred.sample_counts_cleaned[0], pred.masks["out"].reshape(*pred.prob.shape[:2], -1).sum(-1))
        assert np.all(pred.spread == 0)


def test_paper_call_counts_match_the_published_settings():
    T = 500
    c = calls_per_slice(PRESETS["paper"], T)
    assert c == {"out": 1, "salient": 100 * 62, "infer": 50 * 250, "union": 1 + 6200 + 12500}
    assert calls_per_slice(PRESETS["fast"], T)["union"] <= 20


def test_union_contains_every_mode_and_its_prob_is_the_max(tiny_net):
    x = _image(B=3, seed=1)
    cfg = make_config("union", "fast", cleanup=True)
    pred = predict(tiny_net, S40, x, cfg, 3)
    for m in ("out", "salient", "infer"):
        assert np.all(pred.masks["union"] >= pred.masks[m]), m
        assert np.all(pred.prob >= pred.probs[m])
    assert pred.masks["union"].any() and not pred.masks["union"].all()  # a non-trivial check
    raw = dataclasses.replace(cfg, cleanup=False)
    pred = predict(tiny_net, S40, x, raw, 3)
    assert np.array_equal(pred.masks["union"], pred.prob >= 0.5)


def test_seed_gives_bit_identical_results_on_cpu(tiny_net):
    x = _image()
    cfg = make_config("union", "fast")
    a = predict(tiny_net, S40, x, cfg, 7)
    b = predict(tiny_net, S40, x, cfg, 7)
    c = predict(tiny_net, S40, x, cfg, 8)
    for m in a.masks:
        assert np.array_equal(a.masks[m], b.masks[m])
    assert np.array_equal(a.prob, b.prob) and np.array_equal(a.spread, b.spread)
    assert np.array_equal(a.sample_counts, b.sample_counts)
    assert not np.array_equal(a.probs["infer"], c.probs["infer"])


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_a_slice_answer_does_not_depend_on_its_batch(tiny_net, preset):
    """Per-slice noise streams: slice 2 of a batch of 4 gives what it gives alone, with any chunking, in
    every stochastic mode (what makes gating the stochastic modes exact). Equal up to float rounding:
    the CPU convolution itself sums in a batch-size-dependent order (`out` differs by ~1e-7 too)."""
    x = _image(B=4, seed=3)
    seeds = [11, 22, 33, 44]
    cfg = make_config("union", preset, samples=3, max_batch=64)
    full = predict(tiny_net, S40, x, cfg, {"salient": SliceNoise(seeds), "infer": SliceNoise([5, 6, 7, 8])})
    alone_cfg = dataclasses.replace(cfg, max_batch=2)
    alone = predict(tiny_net, S40, x[2:3], alone_cfg, {"salient": SliceNoise(seeds[2:3]), "infer": SliceNoise([7])})
    for m in ("out", "salient", "infer", "union"):
        assert np.allclose(full.probs[m][2:3], alone.probs[m], atol=1e-5, rtol=0), m
        assert np.array_equal(full.masks[m][2:3], alone.masks[m]), m
    # and different seeds do change the stochastic answer
    other = predict(tiny_net, S40, x[2:3], alone_cfg, {"salient": SliceNoise([99]), "infer": SliceNoise([98])})
    assert np.abs(other.probs["infer"] - alone.probs["infer"]).max() > 1e-3


def test_brain_mask_zeroes_everything_outside(tiny_net):
    x = _image()
    brain = np.zeros((2, 1, 16, 16), dtype=bool)
    brain[:, :, 4:12, 4:12] = True
    pred = predict(tiny_net, S40, x, make_config("union", "fast", cleanup=False), 0,
                   brain=brain)
    outside = ~np.broadcast_to(brain, pred.prob.shape)
    assert np.all(pred.prob[outside] == 0) and np.all(pred.spread[outside] == 0)
    assert not any(m[outside].any() for m in pred.masks.values())
    assert pred.sample_counts.max() <= 64


class OracleLabel:
    """eps_hat = 0.3 x_t; y_t_hat built so that y0_hat(t) = a + b t exactly, for any noise."""

    cpu = True

    def __init__(self, sched, a: float, b: float, num_classes: int = 2):
        self.s, self.a, self.b, self.C = sched, a, b, num_classes

    def __call__(self, x_t, t, need_label, cond=None):
        eps_hat = 0.3 * x_t
        if not need_label:
            return eps_hat, None
        y0 = np.broadcast_to((self.a + self.b * t.astype(x_t.dtype)).reshape(-1, 1, 1, 1), (len(t), self.C, *x_t.shape[-2:]))
        yt = coef(np.sqrt(self.s.abar), t, y0) * y0 + coef(np.sqrt(1 - self.s.abar), t, y0) * eps_hat
        return eps_hat, yt


def test_out_and_salient_weighting_against_closed_form():
    S = sigmoid_schedule(500)
    net = OracleLabel(S, a=-0.5, b=0.02)
    x = _image(B=1)
    pred = predict(net, S, x, make_config("out", "paper"), 0)
    assert np.allclose(pred.prob, 0.25)
    # paper salient: every t < 62 with weights 1 - t/62, renormalised, so y0 = a + b E_w[t]
    cfg = make_config("salient", "paper", samples=2)
    pred = predict(net, S, x, cfg, 0)
    t = np.arange(62, dtype=np.float64)
    w = 1 - t / 62
    expect = (-0.5 + 0.02 * float((w * t).sum() / w.sum()) + 1) / 2
    assert np.allclose(pred.prob.astype(np.float64), expect, atol=1e-5)
    assert pred.spread.max() < 1e-6  # no noise dependence -> no spread


def test_stratified_salient_plan_is_unbiased_for_the_weighted_mean():
    cfg = make_config("salient", "fast", samples=4000)
    t, w = salient_plan(cfg, 500, [NoiseStream(s) for s in range(4000)])
    assert t.shape == (4000, cfg.salient_steps) and np.allclose(w.sum(1), 1.0)
    tt = np.arange(62, dtype=np.float64)
    wt = 1 - tt / 62
    assert (t * w).sum(1).mean() == pytest.approx(float((wt * tt).sum() / wt.sum()), rel=0.01)
    assert t.min() >= 0 and t.max() < 62
    full_t, full_w = salient_plan(make_config("salient", "paper", samples=3), 500, NoiseStream(0))
    assert full_t.shape == (3, 62) and np.allclose(full_w[0], wt / wt.sum())


def _eps_fn(x, k):
    # any smooth function of (x_t, t) stands in for a trained noise head
    return np.tanh(1.5 * x + 0.01 * k) + 0.1 * np.sin(3 * x)


def _stream_draw(seed: int):
    """A chain's noise from one stream, shaped and typed like the chain's x."""
    stream = NoiseStream(seed)
    return lambda like: stream.normal(like.shape).astype(like.dtype)


@pytest.mark.parametrize("steps", [None, 7, 2])
def test_invariance_unclamped_chain_equals_closed_form(steps):
    """METHOD_NOTES 'A property worth using': c1/sqrt(abar) + c2 = 1/sqrt(alpha), so (y - x)/sqrt(abar)
    is constant along the chain and y0_final = x0_hat_final + (y_Ti - x_Ti)/sqrt(abar_Ti)."""
    S = sigmoid_schedule(500)
    assert np.allclose(S.c1 / np.sqrt(S.abar) + S.c2, 1 / np.sqrt(S.alphas), rtol=1e-12)
    g = np.random.default_rng(0)
    x0 = g.random((3, 1, 6, 6)) * 2 - 1
    k0 = 249
    x = q_sample(x0, np.full(3, k0), g.standard_normal((3, 1, 6, 6)), S)
    y = g.standard_normal((3, 2, 6, 6))  # any starting label
    ks = step_indices(k0, steps)
    y0, x0_hat = run_chain(_eps_fn, x, y, _eps_fn(x, k0), ks, S, _stream_draw(1),
                           clamp=False, shortcut=False)
    closed = x0_hat + (y - x) / math.sqrt(float(S.abar[k0]))
    assert np.allclose(y0, closed, rtol=0, atol=1e-9)
    # the sampler's shortcut gives the same answer without running the label chain
    y0s, x0s = run_chain(_eps_fn, x, y, _eps_fn(x, k0), ks, S, _stream_draw(1),
                         clamp=False, shortcut=True)
    assert np.allclose(y0s, y0, atol=1e-9) and np.array_equal(x0s, x0_hat)
    # with the clamps the chain is no longer the closed form (they are what makes `infer` differ)
    y0c, _ = run_chain(_eps_fn, x, y, _eps_fn(x, k0), ks, S, _stream_draw(1), clamp=True)
    assert not np.allclose(y0c, np.clip(closed, -1, 1), atol=1e-3)


def test_label_head_skipped_inside_the_chain_and_batches_bounded(tiny_net):
    x = _image(B=2)
    cfg = make_config("infer", "fast", samples=3, steps=4, max_batch=4)
    net = Counting(tiny_net)
    predict(net, S40, x, cfg, 0)
    # 6 chains in chunks of <= 4: per chunk one full call at T_i, then 3 noise-only calls
    assert [b for b, _ in net.calls] == [4, 4, 4, 4, 2, 2, 2, 2]
    assert [nl for _, nl in net.calls] == [True, False, False, False] * 2
    # salient and out always need the label head
    net.calls.clear()
    predict(net, S40, x, make_config("salient", "fast", max_batch=4), 0)
    assert all(nl for _, nl in net.calls) and max(b for b, _ in net.calls) <= 4


def test_batch_chunking_does_not_change_out(tiny_net):
    x = _image(B=2)
    a = predict(tiny_net, S40, x, make_config("out", "fast", max_batch=1), 0)
    b = predict(tiny_net, S40, x, make_config("out", "fast", max_batch=64), 0)
    assert np.allclose(a.prob, b.prob, atol=1e-6)


def test_cpu_calls_take_a_few_images_each_and_give_the_whole_batch_answer(tiny_net):
    """On a CPU the network sees at most cfg.cpu_call_pixels per call (caches; benchmarks/call_batch.py):
    a 64-image salient batch is split, and the answer is the one-call answer up to float rounding."""
    from sdpm_cli.model.samplers import call_rows

    x = _image(B=2)
    cfg = make_config("union", "fast", max_batch=64)
    whole = predict(tiny_net, S40, x, cfg, 0)
    three = dataclasses.replace(cfg, cpu_call_pixels=3 * x.shape[-2] * x.shape[-1])
    assert call_rows(tiny_net, *x.shape[-2:], 64, three.cpu_call_pixels) == 3
    net = Counting(tiny_net)
    split = predict(net, S40, x, three, 0)
    assert net.calls and max(b for b, _ in net.calls) == 3
    assert np.allclose(split.prob, whole.prob, atol=1e-5)
    assert (split.masks["union"] != whole.masks["union"]).mean() < 1e-3
    # a budget smaller than one image still gets a call of one image; off the CPU a call takes them all
    assert call_rows(tiny_net, *x.shape[-2:], 64, 1) == 1
    assert call_rows(TorchNetwork(tiny_net.net, "cuda"), *x.shape[-2:], 64, 1) == 64


def test_config_validation_and_overrides():
    cfg = make_config("infer", "paper", steps=10, samples=5)
    assert cfg.steps == 10 and cfg.salient_samples == cfg.infer_samples == 5 and cfg.preset == "paper"
    assert PRESETS["paper"].steps is None  # presets are not mutated
    with pytest.raises(UsageError, match="unknown preset"):
        make_config("union", "turbo")
    with pytest.raises(UsageError, match="unknown mode"):
        make_config("all", "fast")
    with pytest.raises(UsageError):
        make_config("infer", "fast", steps=0)


def test_a_conditioned_net_reads_each_rows_own_condition_in_every_mode():
    """Each slice's conditioning channel follows it through the repeats and chains of every mode:
    a slice alone gives exactly its answer in a batch, and a different condition changes it."""
    torch.manual_seed(0)
    net = TorchNetwork(SDPMNet(dataclasses.replace(TINY, cond_channels=1)).eval())
    x, cond = _image(B=3, seed=1), _image(B=3, seed=2)
    cfg = make_config("union", "fast", cleanup=False)
    seeds = [11, 12, 13]
    full = predict(net, S40, x, cfg, {"salient": SliceNoise(seeds), "infer": SliceNoise([21, 22, 23])}, cond=cond)
    alone = predict(net, S40, x[1:2], cfg, {"salient": SliceNoise(seeds[1:2]), "infer": SliceNoise([22])}, cond=cond[1:2])
    for m in ("out", "salient", "infer", "union"):
        assert np.allclose(full.probs[m][1:2], alone.probs[m], atol=1e-6), m
    other = predict(net, S40, x[1:2], cfg, {"salient": SliceNoise(seeds[1:2]), "infer": SliceNoise([22])}, cond=-cond[1:2])
    assert not np.allclose(other.probs["out"], alone.probs["out"])
