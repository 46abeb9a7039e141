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

Noise: every (slice, repeat) pair draws from its own stream (`SliceNoise`), so a slice's answer does
not depend on which slices share its batch, on the batch size or on `max_batch` chunking. That is
what lets the pipeline run the stochastic modes only on slices where a lesion can be (gating) and
still give those slices, bit for bit, the answer of an ungated run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from sdpm_cli.model.diffusion import Schedule, jump_coefficients, predict_z0, q_sample, step_indices, synchronous_step
from sdpm_cli.model.inference import PRESETS, InferenceConfig, calls_per_slice, cpu_call_rows, make_config  # noqa: F401 - re-exported
from sdpm_cli.modes import UNION_PARTS
from sdpm_cli.postprocess.cleanup import lesion_masks, remove_isolated


@dataclass
class Prediction:
    """Result for one batch of slices [B, ...] in the requested mode (C = lesion classes)."""

    prob: Tensor  # [B,C,H,W] probability (union: per-voxel max over out/salient/infer)
    spread: Tensor  # [B,C,H,W] std of the per-sample probability (0 for `out`)
    masks: dict[str, Tensor]  # mode -> bool [B,C,H,W]; union also carries out/salient/infer
    n_calls: int  # network calls per slice
    sample_counts: Tensor  # [S,B,C] pixels with per-sample probability >= threshold (before cleanup)
    probs: dict[str, Tensor] = field(default_factory=dict)  # mode -> [B,C,H,W], each mode computed
    # bool [S,B,C,H,W] each sample's mask after the same threshold, brain and cleanup as `masks`
    # (what a volume interval comparable with the cleaned point volume is built from)
    sample_masks: Optional[Tensor] = None

    @property
    def sample_counts_cleaned(self) -> Optional[Tensor]:
        """[S,B,C] pixels of each sample's cleaned mask."""
        return None if self.sample_masks is None else self.sample_masks.flatten(3).sum(-1)


def _to_prob(y0: Tensor) -> Tensor:
    return ((y0.clamp(-1.0, 1.0) + 1.0) * 0.5)


def _randn(shape, generator: torch.Generator, like: Tensor) -> Tensor:
    # drawn on the CPU from the caller's generator: same seed -> same numbers on any device
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def mix_seed(*parts: object) -> int:
    """A 63-bit seed from any labels (study key, mode, slice index, repeat): stable across runs."""
    return int.from_bytes(hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


class SliceNoise:
    """One noise stream per (slice of the batch, repeat), created on first use from the slice's seed.

    Draws are on the CPU (same numbers on any device). A stream is consumed in the same order
    (salient: plan, then one image per timestep; infer: start, then one image per jump) however the
    rows are batched or chunked.
    """

    def __init__(self, slice_seeds: Sequence[int]) -> None:
        self.seeds = [int(v) for v in slice_seeds]
        self._streams: dict[tuple[int, int], torch.Generator] = {}

    @classmethod
    def from_generator(cls, generator: torch.Generator, n_slices: int) -> "SliceNoise":
        """Slice seeds drawn from one generator (a batch given with a plain torch.Generator)."""
        return cls(torch.randint(0, 1 << 62, (n_slices,), generator=generator).tolist())

    def __len__(self) -> int:
        return len(self.seeds)

    def stream(self, b: int, s: int) -> torch.Generator:
        if (b, s) not in self._streams:
            self._streams[(b, s)] = torch.Generator(device="cpu").manual_seed(mix_seed(self.seeds[b], s))
        return self._streams[(b, s)]

    def randn(self, rows: Sequence[tuple[int, int]], shape, like: Tensor) -> Tensor:
        """[len(rows), *shape] standard normal, row r from stream rows[r] = (slice, repeat)."""
        out = torch.stack([torch.randn(tuple(shape), generator=self.stream(b, s), dtype=torch.float32) for b, s in rows])
        return out.to(device=like.device, dtype=like.dtype)


NoiseSource = Union[torch.Generator, SliceNoise]


def _slice_noise(noise: NoiseSource, n_slices: int) -> SliceNoise:
    if isinstance(noise, SliceNoise):
        if len(noise) != n_slices:
            raise ValueError(f"SliceNoise has {len(noise)} slice seeds for a batch of {n_slices}")
        return noise
    return SliceNoise.from_generator(noise, n_slices)


CPU_CALL_PIXELS = InferenceConfig.cpu_call_pixels  # the default, for callers without a config


def call_rows(x: Tensor, cpu_pixels: int = CPU_CALL_PIXELS) -> int:
    """Images per network call for a batch like x [B, C, H, W] (all of them off the CPU)."""
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return cpu_call_rows(x.shape[-2], x.shape[-1], cpu_pixels)


def _call(net, x: Tensor, t: Tensor | int, need_label: bool, cond: Tensor | None = None,
          cpu_pixels: int = CPU_CALL_PIXELS):
    """The network on x in calls of `call_rows` images (InferenceConfig.cpu_call_pixels)."""
    if not isinstance(t, Tensor):
        t = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    t = t.to(x.device)
    rows = call_rows(x, cpu_pixels)
    parts = []
    for i in range(0, x.shape[0], rows):
        sl = slice(i, i + rows)
        # `cond`: the clean conditioning channels of these rows (a model whose plan asks for a mirror image)
        parts.append(net(x[sl], t[sl], need_label=need_label) if cond is None
                     else net(x[sl], t[sl], need_label=need_label, cond=cond[sl]))
    # under bf16 autocast the network runs in bf16; the diffusion maths stays in float32
    return tuple(None if p[0] is None else torch.cat([v.float() for v in p]) for p in zip(*parts))


def predict_out(net, sched: Schedule, x0: Tensor, cond: Tensor | None = None,
                cpu_pixels: int = CPU_CALL_PIXELS) -> Tensor:
    """`out`: one call on the clean image at step index 0; returns per-sample p [1,B,C,H,W]."""
    t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    eps_hat, yt_hat = _call(net, x0, t, True, cond, cpu_pixels)
    return _to_prob(predict_z0(yt_hat, t, eps_hat, sched))[None]


def salient_plan(cfg: InferenceConfig, T: int, generator: torch.Generator | Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
    """(t [S,K], w [S,K]): timesteps and weights of each salient repeat (weights sum to 1 per repeat).
    `generator`: one for all repeats, or one per repeat (a slice's own streams).

    Every step of the window with w_t = 1 - (t/T_w)^gamma renormalised (the paper), or, with fewer
    steps K, K stratified draws from the distribution w_t / sum(w) with equal weight 1/K: an
    unbiased estimate of the same weighted mean at K/T_w of the cost.
    """
    tw = cfg.window(T)
    S = cfg.salient_samples
    tt = torch.arange(tw, dtype=torch.float64)
    w = 1.0 - (tt / tw) ** cfg.gamma
    w = w / w.sum()
    if cfg.salient_steps is None or cfg.salient_steps >= tw:
        return torch.arange(tw).expand(S, tw).clone(), w.expand(S, tw).clone()
    K = cfg.salient_steps
    cdf = torch.cumsum(w, 0)
    if isinstance(generator, torch.Generator):
        u = torch.rand(S, 1, generator=generator, dtype=torch.float64)
    else:
        u = torch.cat([torch.rand(1, 1, generator=g, dtype=torch.float64) for g in generator[:S]])
    q = (torch.arange(K, dtype=torch.float64)[None] + u) / K
    t = torch.searchsorted(cdf, q, right=True).clamp_max(tw - 1)
    return t, torch.full((S, K), 1.0 / K, dtype=torch.float64)


def predict_salient(net, sched: Schedule, x0: Tensor, cfg: InferenceConfig, noise: NoiseSource,
                    cond: Tensor | None = None) -> Tensor:
    """`salient`: weighted mean of y0_hat(t) over the window, fresh noise per t; p [S,B,C,H,W].
    Each slice's repeats have their own timestep plan and noise (see SliceNoise)."""
    B = x0.shape[0]
    noise = _slice_noise(noise, B)
    S = cfg.salient_samples
    plans = [salient_plan(cfg, sched.T, [noise.stream(b, s) for s in range(S)]) for b in range(B)]
    ts = torch.stack([p[0] for p in plans], 1)  # [S, B, K]
    ws = torch.stack([p[1] for p in plans], 1)
    K = ts.shape[-1]
    pairs = [(s, k) for s in range(S) for k in range(K)]
    acc: Tensor | None = None
    per_chunk = max(1, cfg.max_batch // B)
    for i in range(0, len(pairs), per_chunk):
        chunk = pairs[i : i + per_chunk]
        n = len(chunk)
        rows = [(b, s, k) for s, k in chunk for b in range(B)]  # pair-major, like x0.repeat(n, ...)
        t = torch.tensor([int(ts[s, b, k]) for b, s, k in rows], device=x0.device)
        wt = torch.tensor([float(ws[s, b, k]) for b, s, k in rows], device=x0.device, dtype=x0.dtype)
        x_rep = x0.repeat(n, 1, 1, 1)
        x_t = q_sample(x_rep, t, noise.randn([(b, s) for b, s, _ in rows], x0.shape[1:], x0), sched)
        eps_hat, yt_hat = _call(net, x_t, t, True, None if cond is None else cond.repeat(n, 1, 1, 1),
                                cfg.cpu_call_pixels)
        y0 = predict_z0(yt_hat, t, eps_hat, sched).clamp(-1.0, 1.0)
        y0 = y0.reshape(n, B, *y0.shape[1:]) * wt.reshape(n, B, 1, 1, 1)
        if acc is None:
            acc = torch.zeros(S, *y0.shape[1:], dtype=y0.dtype, device=y0.device)
        acc.index_add_(0, torch.tensor([s for s, _ in chunk], device=y0.device), y0)
    return _to_prob(acc)


def run_chain(
    eps_fn: Callable[[Tensor, int], Tensor],
    x: Tensor, y: Tensor, eps_hat: Tensor, ks: list[int], sched: Schedule,
    generator: torch.Generator | Callable[[Tensor], Tensor],
    d_i: float = 1.0, clamp: bool = True, shortcut: bool = True,
) -> tuple[Tensor, Tensor]:
    """Algorithm 1 from index ks[0] with estimated noise eps_hat there: returns (y0_hat, x0_hat).
    `generator`: a torch.Generator, or a function giving the noise like x (per-row streams).

    Each step estimates x0 and y0 from the one eps_hat (clamped to [-1, 1] when `clamp`), then
    jumps both to the next index with the posterior mean and the SAME noise z (label noise scaled
    by d_i). Without clamps and with d_i = 1, (y - x)/sqrt(abar) is constant along the chain, so
    y0_hat = x0_hat_final + (y_start - x_start)/sqrt(abar_start): with `shortcut` the label chain
    is then replaced by that closed form (same answer, tested).
    """
    closed = shortcut and not clamp and d_i == 1.0
    offset = (y - x) / math.sqrt(float(sched.abar[ks[0]])) if closed else None
    for j, k in enumerate(ks):
        kt = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        x0_hat = predict_z0(x, kt, eps_hat, sched)
        y0_hat = None if closed else predict_z0(y, kt, eps_hat, sched)
        if clamp:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
            y0_hat = y0_hat.clamp(-1.0, 1.0)
        if j == len(ks) - 1:
            return (x0_hat + offset if closed else y0_hat), x0_hat
        c1, c2, s2 = jump_coefficients(sched, k, ks[j + 1])
        if s2 > 0:
            z = generator(x) if callable(generator) else _randn(x.shape, generator, x)
        else:
            z = None
        if closed:
            x = c1 * x0_hat + c2 * x + (math.sqrt(s2) * z if z is not None else 0.0)
        else:
            x, y = synchronous_step(x, y, x0_hat, y0_hat, z, c1, c2, s2, label_noise=d_i)
        eps_hat = eps_fn(x, ks[j + 1])
    raise ValueError("a chain needs at least one index")


def predict_infer(net, sched: Schedule, x0: Tensor, cfg: InferenceConfig, noise: NoiseSource,
                  cond: Tensor | None = None) -> Tensor:
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
        which = torch.tensor([b for b, _ in rows], device=x0.device)
        xc, cc = x0[which], (None if cond is None else cond[which])
        eps_fn = lambda x, k, cc=cc: _call(net, x, k, False, cc, cfg.cpu_call_pixels)[0]  # noqa: E731 - label decoder skipped in the chain
        x = q_sample(xc, torch.full((len(rows),), k0, device=x0.device), noise.randn(rows, x0.shape[1:], x0), sched)
        eps_hat, y = _call(net, x, k0, True, cc, cfg.cpu_call_pixels)  # the label head's y_t_hat starts the label chain
        draw = lambda like, rows=rows: noise.randn(rows, like.shape[1:], like)  # noqa: E731
        y0, _ = run_chain(eps_fn, x, y, eps_hat, ks, sched, draw, d_i=cfg.d_i, clamp=cfg.clamp)
        outs.append(y0)
    y0 = torch.cat(outs).reshape(S, B, *outs[0].shape[1:])
    return _to_prob(y0)


def _summarise(p: Tensor, brain: Tensor | None, cfg: InferenceConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample p [S,B,C,H,W] -> (prob, spread, raw mask, sample_counts)."""
    if brain is not None:
        p = p * brain.to(p.dtype)[None]
    prob = p.mean(0)
    spread = p.std(0, unbiased=False) if p.shape[0] > 1 else torch.zeros_like(prob)
    counts = (p >= cfg.threshold).flatten(3).sum(-1)
    return prob, spread, prob >= cfg.threshold, counts


def _sample_masks(p: Tensor, brain: Tensor | None, cfg: InferenceConfig) -> Tensor:
    """Per-sample masks [S,B,C,H,W] with the same threshold, brain and cleanup as the final mask."""
    return lesion_masks(p, None if brain is None else brain[None], cfg.threshold,
                        cfg.cleanup_radius if cfg.cleanup else None)


@torch.no_grad()
def predict(net, sched: Schedule, x0: Tensor, cfg: InferenceConfig,
            generator: NoiseSource | Mapping[str, NoiseSource],
            brain: Tensor | None = None, cond: Tensor | None = None, out_prob: Tensor | None = None) -> Prediction:
    """Read lesion probabilities and masks for a batch of slices x0 [B,1,H,W] in [-1, 1].

    `generator`: one source for every mode, or one per stochastic mode ({"salient": n1, "infer": n2});
    a source is a torch.Generator or a SliceNoise (per-slice seeds). With separate sources a
    `--mode salient` run draws exactly the noise that `salient` draws inside `union`, so the union
    of one run contains the other modes' runs voxel for voxel. `cond` [B, K, H, W]: the clean
    conditioning channels of these slices, for a network that takes them (`Prepared.condition`).
    `out_prob` [B, C, H, W]: `out`'s probability of these slices where the caller already has it (the
    pipeline's first, ungated pass), used instead of calling the network again.
    """
    gens = generator if isinstance(generator, Mapping) else {"salient": generator, "infer": generator}
    if x0.dim() != 4 or x0.shape[1] != 1:
        raise ValueError("x0 must be [B, 1, H, W]")
    if brain is not None:
        brain = brain.bool().expand(x0.shape[0], 1, *x0.shape[-2:])
    modes = UNION_PARTS if cfg.mode == "union" else (cfg.mode,)
    samples: dict[str, Tensor] = {}
    for m in modes:
        if m == "out":
            samples[m] = (predict_out(net, sched, x0, cond, cfg.cpu_call_pixels) if out_prob is None
                          else out_prob.to(x0.device)[None])
        elif m == "salient":
            samples[m] = predict_salient(net, sched, x0, cfg, gens["salient"], cond)
        else:
            samples[m] = predict_infer(net, sched, x0, cfg, gens["infer"], cond)
    probs, spreads, masks, counts = {}, {}, {}, {}
    for m, p in samples.items():
        probs[m], spreads[m], raw, counts[m] = _summarise(p, brain, cfg)
        masks[m] = remove_isolated(raw, cfg.cleanup_radius) if cfg.cleanup else raw
    calls = calls_per_slice(cfg, sched.T)
    if cfg.mode != "union":
        m = cfg.mode
        per_sample = _sample_masks(samples[m], brain, cfg)
        return Prediction(probs[m], spreads[m], masks, calls[m], counts[m], probs, per_sample)
    # union: sample s combines out, salient repeat s and infer run s (cycling the shorter one)
    S = max(p.shape[0] for p in samples.values())
    p_union = torch.stack([
        torch.maximum(torch.maximum(samples["out"][0], samples["salient"][s % samples["salient"].shape[0]]),
                      samples["infer"][s % samples["infer"].shape[0]])
        for s in range(S)
    ])
    _, spread_u, _, counts_u = _summarise(p_union, brain, cfg)
    prob_u = torch.maximum(torch.maximum(probs["out"], probs["salient"]), probs["infer"])
    masks["union"] = masks["out"] | masks["salient"] | masks["infer"]
    probs["union"] = prob_u
    per = {m: _sample_masks(samples[m], brain, cfg) for m in ("salient", "infer")}  # `out` has one sample: masks["out"]
    per_sample = torch.stack([
        masks["out"] | per["salient"][s % per["salient"].shape[0]] | per["infer"][s % per["infer"].shape[0]]
        for s in range(S)
    ])
    return Prediction(prob_u, spread_u, masks, calls["union"], counts_u, probs, per_sample)
