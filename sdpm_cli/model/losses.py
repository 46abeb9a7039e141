"""SDPM training losses, from the formulas (docs: /work/shared/paper/METHOD_NOTES.md).

L_eps  P2-weighted noise matching (noise stream).
L_p    noisy-label matching |y_t_hat - y_t|^2 for t < T_p (label stream; trains the `infer` start).
L_d1   posterior-mean matching |mu(y_t, y0_hat) - mu(y_t, y0)|^2 = c1_t^2 |y0_hat - y0|^2. The
       unweighted |y0_hat - y0|^2 has a gradient scaled by 1/sqrt(abar_t) (x1289 at t = 499); the
       derived c1_t^2 weight keeps it bounded at every t.
L_d2   |y0_hat - y0|^2 at small t (t < T_d: the last steps of the chain, `out` and `salient`).
Dice   soft Dice of sigmoid(k * y0_hat) against the {0,1} label at small t (k maps y0 = +-1 to
       about 0.98 / 0.02, so the 0.5 threshold is y0_hat = 0, as in inference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from sdpm_cli.model.diffusion import Schedule, coef, predict_z0, q_sample


@dataclass
class LossWeights:
    """Weights of each term and the time windows they act on (all configurable by the trainer)."""

    eps: float = 1.0
    p: float = 1.0
    d1: float = 1.0
    d2: float = 1.0
    dice: float = 1.0
    T_p: int = 250  # L_p window: t < T_p (covers the paper's infer start T_i = T/2)
    T_d: int = 32  # "small t" window of L_d2 and Dice
    small_t_fraction: float = 0.25  # share of each batch drawn from [0, T_d) instead of [0, T)
    dice_scale: float = 4.0  # p = sigmoid(dice_scale * y0_hat)

    def to_dict(self) -> dict:
        return asdict(self)


def sample_t(batch: int, T: int, weights: LossWeights, generator: torch.Generator | None = None) -> Tensor:
    """Step indices for a batch: uniform on [0, T), except a fixed share uniform on [0, T_d).

    Uniform t alone puts only T_d/T of the samples where `out`/`salient` read the label (6% for
    T_d = 32); the small-t share makes L_d2 and Dice see every batch.
    """
    t = torch.randint(0, T, (batch,), generator=generator)
    n_small = int(round(batch * weights.small_t_fraction))
    if n_small > 0:
        t[:n_small] = torch.randint(0, max(1, min(weights.T_d, T)), (n_small,), generator=generator)
    return t


def _masked_mean(per_sample: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(per_sample.dtype)
    return (per_sample * m).sum() / m.sum().clamp_min(1.0)


def soft_dice_loss(prob: Tensor, target01: Tensor, mask: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - mean over classes of the batch soft Dice over the selected samples."""
    m = mask.to(prob.dtype)[:, None, None, None]
    inter = (prob * target01 * m).sum(dim=(0, 2, 3))
    denom = (prob * m).sum(dim=(0, 2, 3)) + (target01 * m).sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + smooth) / (denom + smooth)).mean()


def sdpm_losses(
    net,
    x0: Tensor,
    y0: Tensor,
    sched: Schedule,
    weights: LossWeights | None = None,
    t: Tensor | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: Tensor | None = None,
) -> dict[str, Tensor]:
    """All SDPM losses for one batch; x0 [B,1,H,W] in [-1,1], y0 [B,C,H,W] in {-1,1}.

    t and eps (one noise map [B,1,H,W], shared by image and every label channel) are drawn from
    `generator` when not given. `cond` [B,K,H,W]: clean conditioning channels (never noised).
    Returns the weighted "total" and each unweighted term.
    """
    w = weights or LossWeights()
    B = x0.shape[0]
    if t is None:
        t = sample_t(B, sched.T, w, generator).to(x0.device)
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(x0, t, eps, sched)
    y_t = q_sample(y0, t, eps, sched)
    eps_hat, yt_hat = net(x_t, t, need_label=True) if cond is None else net(x_t, t, need_label=True, cond=cond)
    y0_hat = predict_z0(yt_hat, t, eps_hat, sched)

    per = lambda v: v.flatten(1).mean(1)  # noqa: E731 - mean over all but the batch axis
    sq_y0 = per((y0_hat - y0) ** 2)
    small = t < w.T_d
    terms = {
        "eps": (coef(sched.p2, t, eps).flatten() * per((eps_hat - eps) ** 2)).mean(),
        "p": _masked_mean(per((yt_hat - y_t) ** 2), t < w.T_p),
        "d1": (coef(sched.c1 ** 2, t, y0).flatten() * sq_y0).mean(),
        "d2": _masked_mean(sq_y0, small),
        "dice": soft_dice_loss(torch.sigmoid(w.dice_scale * y0_hat), (y0 > 0).to(y0_hat.dtype), small),
    }
    total = sum(getattr(w, k) * v for k, v in terms.items())
    terms["total"] = total
    return terms
