"""Synchronous diffusion maths: the sigmoid schedule, one shared noise for image and label, the
DDPM posterior and strided (DDIM-style, eta = 1) jumps.

Time indices are 0-based: index k in [0, T) is DDPM step t = k + 1, so `abar[0]` is the first,
barely noisy step (0.9994 for T = 500) and `abar[T-1]` the last (about 6e-7). Everything here is a
pure function of tensors; the schedule is kept in float64 so closed-form checks hold to float
tolerance, and `coef(...)` hands out per-sample coefficients broadcast to the data's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Schedule:
    """All per-step constants of a T-step schedule (float64 tensors of length T)."""

    T: int
    betas: Tensor
    alphas: Tensor
    abar: Tensor  # cumulative product of alphas
    abar_prev: Tensor  # abar shifted by one, abar_prev[0] = 1
    c1: Tensor  # posterior mean coefficient of z0
    c2: Tensor  # posterior mean coefficient of z_t
    sigma2: Tensor  # posterior variance
    p2: Tensor  # P2 loss weight (k = 1, gamma = 1): 1 / (1 + SNR) = 1 - abar


def sigmoid_schedule(T: int = 500, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Schedule:
    """Sigmoid beta schedule: abar follows a falling sigmoid of k/T, betas clipped to [0, 0.999]."""
    if T < 2:
        raise ValueError("a diffusion schedule needs T >= 2 steps")
    s = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
    v_start, v_end = 1.0 / (1.0 + math.exp(-start / tau)), 1.0 / (1.0 + math.exp(-end / tau))
    f = (v_end - torch.sigmoid((s * (end - start) + start) / tau)) / (v_end - v_start)
    f = f / f[0]
    betas = (1.0 - f[1:] / f[:-1]).clamp(0.0, 0.999)
    return schedule_from_betas(betas)


def schedule_from_betas(betas: Tensor) -> Schedule:
    """Derive every constant from the betas (abar from the clipped betas, as the chain sees them)."""
    betas = betas.to(torch.float64)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    c1 = betas * abar_prev.sqrt() / (1.0 - abar)
    c2 = alphas.sqrt() * (1.0 - abar_prev) / (1.0 - abar)
    sigma2 = betas * (1.0 - abar_prev) / (1.0 - abar)
    return Schedule(
        T=int(betas.numel()), betas=betas, alphas=alphas, abar=abar, abar_prev=abar_prev,
        c1=c1, c2=c2, sigma2=sigma2, p2=1.0 - abar,
    )


def coef(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] shaped [B, 1, 1, ...] to broadcast over `like` (and in its dtype/device)."""
    v = values.to(t.device)[t.long()]
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(dtype=like.dtype, device=like.device)


def q_sample(z0: Tensor, t: Tensor, eps: Tensor, sched: Schedule) -> Tensor:
    """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps; eps [B,1,H,W] broadcasts over label channels."""
    return coef(sched.abar.sqrt(), t, z0) * z0 + coef((1.0 - sched.abar).sqrt(), t, z0) * eps


def predict_z0(z_t: Tensor, t: Tensor, eps_hat: Tensor, sched: Schedule) -> Tensor:
    """Invert q_sample with an estimated noise: (z_t - sqrt(1 - abar) eps_hat) / sqrt(abar)."""
    return (z_t - coef((1.0 - sched.abar).sqrt(), t, z_t) * eps_hat) / coef(sched.abar.sqrt(), t, z_t)


def posterior_mean(z_t: Tensor, z0: Tensor, t: Tensor, sched: Schedule) -> Tensor:
    """Mean of q(z_{t-1} | z_t, z0) = c1_t z0 + c2_t z_t (at index 0 it returns z0)."""
    return coef(sched.c1, t, z_t) * z0 + coef(sched.c2, t, z_t) * z_t


def jump_coefficients(sched: Schedule, t: int, s: int) -> tuple[float, float, float]:
    """(c1, c2, sigma2) of q(z_s | z_t, z0) for a strided jump from index t down to index s < t.

    With s = t - 1 these are exactly sched.c1[t], sched.c2[t], sched.sigma2[t]; a strided chain is
    the DDPM chain of the sub-schedule abar[t_0] > abar[t_1] > ... (DDIM with eta = 1).
    """
    if not 0 <= s < t < sched.T:
        raise ValueError(f"a jump needs 0 <= s < t < T, got t={t}, s={s}")
    a_t, a_s = float(sched.abar[t]), float(sched.abar[s])
    beta_ts = 1.0 - a_t / a_s
    c1 = math.sqrt(a_s) * beta_ts / (1.0 - a_t)
    c2 = math.sqrt(a_t / a_s) * (1.0 - a_s) / (1.0 - a_t)
    sigma2 = beta_ts * (1.0 - a_s) / (1.0 - a_t)
    return c1, c2, sigma2


def step_indices(t_start: int, steps: int | None) -> list[int]:
    """Descending indices from t_start to 0 for a chain of `steps` network calls (None = every step)."""
    if t_start < 0:
        raise ValueError("t_start must be >= 0")
    if steps is None or steps >= t_start + 1:
        return list(range(t_start, -1, -1))
    if steps < 1:
        raise ValueError("a chain needs at least one step")
    if steps == 1:
        return [t_start]
    ks = torch.linspace(float(t_start), 0.0, steps, dtype=torch.float64).round().long().tolist()
    out: list[int] = []
    for k in ks:
        if not out or k < out[-1]:
            out.append(int(k))
    return out


def synchronous_step(
    x_t: Tensor, y_t: Tensor, x0_hat: Tensor, y0_hat: Tensor, z: Tensor | None,
    c1: float, c2: float, sigma2: float, label_noise: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One reverse step for image and label with the SAME noise z (label noise scaled by d_i)."""
    x = c1 * x0_hat + c2 * x_t
    y = c1 * y0_hat + c2 * y_t
    if z is not None and sigma2 > 0:
        sd = math.sqrt(sigma2)
        x = x + sd * z
        y = y + (label_noise * sd) * z
    return x, y
