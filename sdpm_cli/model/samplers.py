"""Inference modes: out, salient, infer (Algorithm 1) and union, batched, seeded, with presets.

Probability of a class: p = (clamp(y0, -1, 1) + 1) / 2, zero outside the brain when a brain mask
is given. Each stochastic mode produces S samples (salient repeats, infer runs): `prob` is their
mean, `spread` their standard deviation, `sample_counts` the pixels each sample alone would call
lesion (the raw material of a volume interval). Masks are prob >= threshold, then the all-ones
kernel cleanup; `union` is the OR of the three cleaned masks and its `prob` the per-voxel MAX of
the three modes' probabilities (so prob >= threshold is exactly the OR before cleanup).

Cost: every repeat and every timestep is a batch item (chunked by `max_batch`); the encoder runs
once per call and the label decoder only where y_t_hat is used (not inside the infer chain).
The invariance of METHOD_NOTES ("A property worth using") is used by `run_chain`: without clamps
and with d_i = 1 the label chain is not run at all, its closed form gives the same answer.

Noise: every (slice, repeat) pair draws from its own stream (`noise.SliceNoise`), so a slice's answer
does not depend on which slices share its batch, on the batch size or on `max_batch` chunking. That
is what lets the pipeline run the stochastic modes only on slices where a lesion can be (gating) and
still give those slices, bit for bit, the answer of an ungated run.

Everything here is numpy around a network call: the network is a `Network` (`model.runtime`: the
checkpoint's torch module on its device and precision, or its ONNX graphs on ONNX Runtime), so the
same sampler code serves every runtime and a CPU run never needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from sdpm_cli.model.diffusion import Schedule, jump_coefficients, predict_z0, q_sample, step_indices, synchronous_step
from sdpm_cli.model.inference import PRESETS, InferenceConfig, calls_per_slice, cpu_call_rows, make_config  # noqa: F401 - re-exported
from sdpm_cli.model.noise import NoiseStream, SliceNoise, mix_seed  # noqa: F401 - re-exported
from sdpm_cli.modes import UNION_PARTS
from sdpm_cli.postprocess.cleanup import lesion_masks


class Network(Protocol):
    """What the samplers call: (eps_hat [N,1,H,W], y_t_hat [N,C,H,W] or None) float32 for noisy
    images x [N,1,H,W] float32 at step indices t [N] int64; `cond` [N,K,H,W] the clean conditioning
    channels of a network that takes them. `cpu`: whether calls should be cut into a few images."""

    cpu: bool

    def __call__(self, x: np.ndarray, t: np.ndarray, need_label: bool, cond: Optional[np.ndarray]) -> tuple:
        ...


@dataclass
class Prediction:
    """Result for one batch of slices [B, ...] in the requested mode (C = lesion classes), numpy."""

    prob: np.ndarray  # [B,C,H,W] probability (union: per-voxel max over out/salient/infer)
    spread: np.ndarray  # [B,C,H,W] std of the per-sample probability (0 for `out`)
    masks: dict[str, np.ndarray]  # mode -> bool [B,C,H,W]; union also carries out/salient/infer
    n_calls: int  # network calls per slice
    sample_counts: np.ndarray  # [S,B,C] pixels with per-sample probability >= threshold (before cleanup)
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> [B,C,H,W], each mode computed
    # bool [S,B,C,H,W] each sample's mask after the same threshold, brain and cleanup as `masks`
    # (what a volume interval comparable with the cleaned point volume is built from)
    sample_masks: Optional[np.ndarray] = None

    @property
    def sample_counts_cleaned(self) -> Optional[np.ndarray]:
        """[S,B,C] pixels of each sample's cleaned mask."""
        return None if self.sample_masks is None else self.sample_masks.reshape(*self.sample_masks.shape[:3], -1).sum(-1)


def _to_prob(y0: np.ndarray) -> np.ndarray:
    return (np.clip(y0, -1.0, 1.0) + 1.0) * 0.5


NoiseSource = Union[int, SliceNoise]


def _slice_noise(noise: NoiseSource, n_slices: int) -> SliceNoise:
    if isinstance(noise, SliceNoise):
        if len(noise) != n_slices:
            raise ValueError(f"SliceNoise has {len(noise)} slice seeds for a batch of {n_slices}")
        return noise
    return SliceNoise.from_seed(int(noise), n_slices)


CPU_CALL_PIXELS = InferenceConfig.cpu_call_pixels  # the default, for callers without a config


def call_rows(net: Network, h: int, w: int, n: int, cpu_pixels: int = CPU_CALL_PIXELS) -> int:
    """Images per network call for n images of h x w (all of them off the CPU)."""
    return cpu_call_rows(h, w, cpu_pixels) if net.cpu else max(1, n)


def _call(net: Network, x: np.ndarray, t: np.ndarray | int, need_label: bool, cond: np.ndarray | None = None,
          cpu_pixels: int = CPU_CALL_PIXELS):
    """The network on x in calls of `call_rows` images (InferenceConfig.cpu_call_pixels)."""
    t = np.full(x.shape[0], int(t), dtype=np.int64) if np.isscalar(t) else np.asarray(t, dtype=np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows = call_rows(net, x.shape[-2], x.shape[-1], x.shape[0], cpu_pixels)
    parts = [net(x[i:i + rows], t[i:i + rows], need_label, None if cond is None else cond[i:i + rows])
             for i in range(0, x.shape[0], rows)]
    return tuple(None if p[0] is None else np.concatenate(p) for p in zip(*parts))


def predict_out(net: Network, sched: Schedule, x0: np.ndarray, cond: np.ndarray | None = None,
                cpu_pixels: int = CPU_CALL_PIXELS) -> np.ndarray:
    """`out`: one call on the clean image at step index 0; returns per-sample p [1,B,C,H,W]."""
    t = np.zeros(x0.shape[0], dtype=np.int64)
    eps_hat, yt_hat = _call(net, x0, t, True, cond, cpu_pixels)
    return _to_prob(predict_z0(yt_hat, t, eps_hat, sched))[None]


def salient_plan(cfg: InferenceConfig, T: int, streams: NoiseStream | Sequence[NoiseStream]) -> tuple[np.ndarray, np.ndarray]:
    """(t [S,K] int64, w [S,K] float64): timesteps and weights of each salient repeat (weights sum
    to 1 per repeat). `streams`: one for all repeats, or one per repeat (a slice's own streams).

    Every step of the window with w_t = 1 - (t/T_w)^gamma renormalised (the paper), or, with fewer
    steps K, K stratified draws from the distribution w_t / sum(w) with equal weight 1/K: an
    unbiased estimate of the same weighted mean at K/T_w of the cost.
    """
    tw = cfg.window(T)
    S = cfg.salient_samples
    tt = np.arange(tw, dtype=np.float64)
    w = 1.0 - (tt / tw) ** cfg.gamma
    w = w / w.sum()
    if cfg.salient_steps is None or cfg.salient_steps >= tw:
        return np.tile(np.arange(tw, dtype=np.int64), (S, 1)), np.tile(w, (S, 1))
    K = cfg.salient_steps
    cdf = np.cumsum(w)
    per_repeat = [streams] * S if isinstance(streams, NoiseStream) else list(streams[:S])
    u = np.array([[st.uniform()] for st in per_repeat], dtype=np.float64)
    q = (np.arange(K, dtype=np.float64)[None] + u) / K
    t = np.minimum(np.searchsorted(cdf, q, side="right"), tw - 1).astype(np.int64)
    return t, np.full((S, K), 1.0 / K, dtype=np.float64)


def predict_salient(net: Network, sched: Schedule, x0: np.ndarray, cfg: InferenceConfig, noise: NoiseSource,
                    cond: np.ndarray | None = None) -> np.ndarray:
    """`salient`: weighted mean of y0_hat(t) over the window, fresh noise per t; p [S,B,C,H,W].
    Each slice's repeats have their own timestep plan and noise (see SliceNoise)."""
    B = x0.shape[0]
    noise = _slice_noise(noise, B)
    S = cfg.salient_samples
    plans = [salient_plan(cfg, sched.T, [noise.stream(b, s) for s in range(S)]) for b in range(B)]
    ts = np.stack([p[0] for p in plans], 1)  # [S, B, K]
    ws = np.stack([p[1] for p in plans], 1)
    K = ts.shape[-1]
    pairs = [(s, k) for s in range(S) for k in range(K)]
    acc: np.ndarray | None = None
    per_chunk = max(1, cfg.max_batch // B)
    for i in range(0, len(pairs), per_chunk):
        chunk = pairs[i : i + per_chunk]
        n = len(chunk)
        rows = [(b, s, k) for s, k in chunk for b in range(B)]  # pair-major, like tiling x0 n times
        t = np.array([ts[s, b, k] for b, s, k in rows], dtype=np.int64)
        wt = np.array([ws[s, b, k] for b, s, k in rows], dtype=np.float32)
        x_rep = np.tile(x0, (n, 1, 1, 1))
        x_t = q_sample(x_rep, t, noise.randn([(b, s) for b, s, _ in rows], x0.shape[1:]), sched)
        eps_hat, yt_hat = _call(net, x_t, t, True, None if cond is None else np.tile(cond, (n, 1, 1, 1)),
                                cfg.cpu_call_pixels)
        y0 = np.clip(predict_z0(yt_hat, t, eps_hat, sched), -1.0, 1.0)
        y0 = y0.reshape(n, B, *y0.shape[1:]) * wt.reshape(n, B, 1, 1, 1)
        if acc is None:
            acc = np.zeros((S, *y0.shape[1:]), dtype=y0.dtype)
        np.add.at(acc, np.array([s for s, _ in chunk]), y0)
    return _to_prob(acc)


def run_chain(
    eps_fn: Callable[[np.ndarray, int], np.ndarray],
    x: np.ndarray, y: np.ndarray, eps_hat: np.ndarray, ks: list[int], sched: Schedule,
    draw: Callable[[np.ndarray], np.ndarray],
    d_i: float = 1.0, clamp: bool = True, shortcut: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 from index ks[0] with estimated noise eps_hat there: returns (y0_hat, x0_hat).
    `draw(x)`: the step's noise, shaped and typed like x (predict_infer: each row from its own stream).

    Each step estimates x0 and y0 from the one eps_hat (clamped to [-1, 1] when `clamp`), then
    jumps both to the next index with the posterior mean and the SAME noise z (label noise scaled
    by d_i). Without clamps and with d_i = 1, (y - x)/sqrt(abar) is constant along the chain, so
    y0_hat = x0_hat_final + (y_start - x_start)/sqrt(abar_start): with `shortcut` the label chain
    is then replaced by that closed form (same answer, tested).
    """
    closed = shortcut and not clamp and d_i == 1.0
    offset = (y - x) / float(sched.sqrt_abar[ks[0]]) if closed else None
    for j, k in enumerate(ks):
        kt = np.full(x.shape[0], k, dtype=np.int64)
        x0_hat = predict_z0(x, kt, eps_hat, sched)
        y0_hat = None if closed else predict_z0(y, kt, eps_hat, sched)
        if clamp:
            x0_hat = np.clip(x0_hat, -1.0, 1.0)
            y0_hat = np.clip(y0_hat, -1.0, 1.0)
        if j == len(ks) - 1:
            return (x0_hat + offset if closed else y0_hat), x0_hat
        c1, c2, s2 = jump_coefficients(sched, k, ks[j + 1])
        z = draw(x) if s2 > 0 else None
        if closed:
            x = c1 * x0_hat + c2 * x + (np.sqrt(s2) * z if z is not None else 0.0)
        else:
            x, y = synchronous_step(x, y, x0_hat, y0_hat, z, c1, c2, s2, label_noise=d_i)
        eps_hat = eps_fn(x, ks[j + 1])
    raise ValueError("a chain needs at least one index")


def predict_infer(net: Network, sched: Schedule, x0: np.ndarray, cfg: InferenceConfig, noise: NoiseSource,
                  cond: np.ndarray | None = None) -> np.ndarray:
    """`infer`: N runs of Algorithm 1 from T_i (strided with cfg.steps); p [S,B,C,H,W].
    Run s of slice b draws from stream (b, s) only (see SliceNoise)."""
    B = x0.shape[0]
    noise = _slice_noise(noise, B)
    S = cfg.infer_samples
    k0 = cfg.start(sched.T) - 1
    ks = step_indices(k0, cfg.steps)
    outs = []
    chains = S * B
    for i in range(0, chains, cfg.max_batch):
        ids = range(i, min(i + cfg.max_batch, chains))
        rows = [(c % B, c // B) for c in ids]  # chain c: slice c % B, run c // B
        which = np.array([b for b, _ in rows])
        xc, cc = x0[which], (None if cond is None else cond[which])
        eps_fn = lambda x, k, cc=cc: _call(net, x, k, False, cc, cfg.cpu_call_pixels)[0]  # noqa: E731 - label decoder skipped in the chain
        x = q_sample(xc, np.full(len(rows), k0, dtype=np.int64), noise.randn(rows, x0.shape[1:]), sched)
        eps_hat, y = _call(net, x, k0, True, cc, cfg.cpu_call_pixels)  # the label head's y_t_hat starts the label chain
        draw = lambda like, rows=rows: noise.randn(rows, like.shape[1:]).astype(like.dtype)  # noqa: E731
        y0, _ = run_chain(eps_fn, x, y, eps_hat, ks, sched, draw, d_i=cfg.d_i, clamp=cfg.clamp)
        outs.append(y0)
    y0 = np.concatenate(outs).reshape(S, B, *outs[0].shape[1:])
    return _to_prob(y0)


def _summarise(p: np.ndarray, brain: np.ndarray | None, cfg: InferenceConfig) -> tuple[np.ndarray, ...]:
    """Per-sample p [S,B,C,H,W] -> (p inside the brain, prob, spread, sample_counts)."""
    if brain is not None:
        p = p * brain[None]
    prob = p.mean(0)
    spread = p.std(0) if p.shape[0] > 1 else np.zeros_like(prob)
    counts = (p >= cfg.threshold).reshape(*p.shape[:3], -1).sum(-1)
    return p, prob, spread, counts


def _masks(prob: np.ndarray, brain: np.ndarray | None, cfg: InferenceConfig) -> np.ndarray:
    """The masks of probabilities [..., B, C, H, W] (a mode's mean, or each sample's): the one rule of
    `cleanup.lesion_masks` with this config's threshold and cleanup, inside `brain` [B, 1, H, W]."""
    return lesion_masks(prob, brain, cfg.threshold, cfg.cleanup_radius if cfg.cleanup else None)


def _sample_masks(p: np.ndarray, mask: np.ndarray, brain: np.ndarray | None, cfg: InferenceConfig) -> np.ndarray:
    """Per-sample masks [S,B,C,H,W] of samples p; a single sample's is the mode's own `mask` (its
    mean is itself), not computed again."""
    return mask[None] if p.shape[0] == 1 else _masks(p, None if brain is None else brain[None], cfg)


def predict(net: Network, sched: Schedule, x0: np.ndarray, cfg: InferenceConfig,
            noise: NoiseSource | Mapping[str, NoiseSource],
            brain: np.ndarray | None = None, cond: np.ndarray | None = None,
            out_prob: np.ndarray | None = None) -> Prediction:
    """Read lesion probabilities and masks for a batch of slices x0 [B,1,H,W] in [-1, 1] (numpy).

    `noise`: one source for every mode, or one per stochastic mode ({"salient": n1, "infer": n2});
    a source is a SliceNoise (per-slice seeds) or an int seed. With separate sources a
    `--mode salient` run draws exactly the noise that `salient` draws inside `union`, so the union
    of one run contains the other modes' runs voxel for voxel. `cond` [B, K, H, W]: the clean
    conditioning channels of these slices, for a network that takes them (`Prepared.condition`).
    `out_prob` [B, C, H, W]: `out`'s probability of these slices where the caller already has it (the
    pipeline's first, ungated pass), used instead of calling the network again.
    """
    gens = noise if isinstance(noise, Mapping) else {"salient": noise, "infer": noise}
    x0 = np.asarray(x0, dtype=np.float32)
    if x0.ndim != 4 or x0.shape[1] != 1:
        raise ValueError("x0 must be [B, 1, H, W]")
    cond = None if cond is None else np.asarray(cond, dtype=np.float32)
    if brain is not None:
        brain = np.broadcast_to(np.asarray(brain, dtype=bool), (x0.shape[0], 1, *x0.shape[-2:]))
    modes = UNION_PARTS if cfg.mode == "union" else (cfg.mode,)
    samples: dict[str, np.ndarray] = {}
    for m in modes:
        if m == "out":
            samples[m] = (predict_out(net, sched, x0, cond, cfg.cpu_call_pixels) if out_prob is None
                          else np.asarray(out_prob, dtype=np.float32)[None])
        elif m == "salient":
            samples[m] = predict_salient(net, sched, x0, cfg, gens["salient"], cond)
        else:
            samples[m] = predict_infer(net, sched, x0, cfg, gens["infer"], cond)
    probs, spreads, masks, counts = {}, {}, {}, {}
    for m in modes:
        samples[m], probs[m], spreads[m], counts[m] = _summarise(samples[m], brain, cfg)
        masks[m] = _masks(probs[m], brain, cfg)
    calls = calls_per_slice(cfg, sched.T)
    if cfg.mode != "union":
        m = cfg.mode
        per_sample = _sample_masks(samples[m], masks[m], brain, cfg)
        return Prediction(probs[m], spreads[m], masks, calls[m], counts[m], probs, per_sample)
    # union: sample s combines out, salient repeat s and infer run s (cycling the shorter one)
    S = max(p.shape[0] for p in samples.values())
    p_union = np.stack([
        np.maximum(np.maximum(samples["out"][0], samples["salient"][s % samples["salient"].shape[0]]),
                   samples["infer"][s % samples["infer"].shape[0]])
        for s in range(S)
    ])
    _, _, spread_u, counts_u = _summarise(p_union, brain, cfg)
    prob_u = np.maximum(np.maximum(probs["out"], probs["salient"]), probs["infer"])
    masks["union"] = masks["out"] | masks["salient"] | masks["infer"]
    probs["union"] = prob_u
    per = {m: _sample_masks(samples[m], masks[m], brain, cfg) for m in ("salient", "infer")}  # `out`'s: masks["out"]
    per_sample = np.stack([
        masks["out"] | per["salient"][s % per["salient"].shape[0]] | per["infer"][s % per["infer"].shape[0]]
        for s in range(S)
    ])
    return Prediction(prob_u, spread_u, masks, calls["union"], counts_u, probs, per_sample)
