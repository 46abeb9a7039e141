"""Synchronous diffusion maths: the sigmoid schedule, one shared noise for image and label, the
DDPM posterior and strided (DDIM-style, eta = 1) jumps.

Time indices are 0-based: index k in [0, T) is DDPM step t = k + 1, so `abar[0]` is the first,
barely noisy step (0.9994 for T = 500) and `abar[T-1]` the last (about 6e-7). Everything here is a
pure function of arrays - numpy arrays (the samplers, which run without torch) or torch tensors
(training) alike; the schedule is kept as float64 numpy arrays so closed-form checks hold to float
tolerance, and `coef(...)` hands out per-sample coefficients broadcast to the data's kind, dtype and
device. torch is imported only when `coef` is given a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """All per-step constants of a T-step schedule (float64 numpy arrays of length T)."""

    T: int
    betas: np.ndarray
    alphas: np.ndarray
    abar: np.ndarray  # cumulative product of alphas
    abar_prev: np.ndarray  # abar shifted by one, abar_prev[0] = 1
    c1: np.ndarray  # posterior mean coefficient of z0
    c2: np.ndarray  # posterior mean coefficient of z_t
    sigma2: np.ndarray  # posterior variance
    p2: np.ndarray  # P2 loss weight (k = 1, gamma = 1): 1 / (1 + SNR) = 1 - abar
    sqrt_abar: np.ndarray  # sqrt(abar): the weight of z0 in z_t
    sqrt_one_minus_abar: np.ndarray  # sqrt(1 - abar): the weight of the noise in z_t


def sigmoid_schedule(T: int = 500, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Schedule:
    """Sigmoid beta schedule: abar follows a falling sigmoid of k/T, betas clipped to [0, 0.999]."""
    if T < 2:
        raise ValueError("a diffusion schedule needs T >= 2 steps")
    s = np.linspace(0.0, 1.0, T + 1, dtype=np.float64)
    v_start, v_end = 1.0 / (1.0 + math.exp(-start / tau)), 1.0 / (1.0 + math.exp(-end / tau))
    f = (v_end - 1.0 / (1.0 + np.exp(-(s * (end - start) + start) / tau))) / (v_end - v_start)
    f = f / f[0]
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    return schedule_from_betas(betas)


def schedule_from_betas(betas) -> Schedule:
    """Derive every constant from the betas (abar from the clipped betas, as the chain sees them)."""
    betas = np.asarray(betas, dtype=np.float64).copy()
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([np.ones(1), abar[:-1]])
    c1 = betas * np.sqrt(abar_prev) / (1.0 - abar)
    c2 = np.sqrt(alphas) * (1.0 - abar_prev) / (1.0 - abar)
    sigma2 = betas * (1.0 - abar_prev) / (1.0 - abar)
    for a in (betas, alphas, abar, abar_prev, c1, c2, sigma2):
        a.flags.writeable = False  # a frozen schedule: its constants are shared by every caller
    return Schedule(
        T=int(betas.size), betas=betas, alphas=alphas, abar=abar, abar_prev=abar_prev,
        c1=c1, c2=c2, sigma2=sigma2, p2=1.0 - abar, sqrt_abar=np.sqrt(abar),
        sqrt_one_minus_abar=np.sqrt(1.0 - abar),
    )


def coef(values: np.ndarray, t, like):
    """values[t] shaped [B, 1, 1, ...] to broadcast over `like`, in its kind (numpy or torch), dtype
    and device. `t`: per-sample step indices (an integer array or tensor)."""
    if isinstance(like, np.ndarray):
        v = np.asarray(values)[np.asarray(t, dtype=np.int64)]
        return v.reshape(-1, *([1] * (like.ndim - 1))).astype(like.dtype)
    import torch

    if isinstance(t, torch.Tensor):  # indexed where t lives: no device-to-host sync in a training step
        v = torch.tensor(np.asarray(values), device=t.device)[t.long()]
    else:
        v = torch.tensor(np.asarray(values))[torch.as_tensor(np.asarray(t, dtype=np.int64))]
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(dtype=like.dtype, device=like.device)


def q_sample(z0, t, eps, sched: Schedule):
    """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps; eps [B,1,H,W] broadcasts over label channels."""
    return coef(sched.sqrt_abar, t, z0) * z0 + coef(sched.sqrt_one_minus_abar, t, z0) * eps


def predict_z0(z_t, t, eps_hat, sched: Schedule):
    """Invert q_sample with an estimated noise: (z_t - sqrt(1 - abar) eps_hat) / sqrt(abar)."""
    return (z_t - coef(sched.sqrt_one_minus_abar, t, z_t) * eps_hat) / coef(sched.sqrt_abar, t, z_t)


def posterior_mean(z_t, z0, t, sched: Schedule):
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
    ks = np.rint(np.linspace(float(t_start), 0.0, steps, dtype=np.float64)).astype(np.int64).tolist()
    out: list[int] = []
    for k in ks:
        if not out or k < out[-1]:
            out.append(int(k))
    return out


def synchronous_step(x_t, y_t, x0_hat, y0_hat, z, c1: float, c2: float, sigma2: float, label_noise: float = 1.0):
    """One reverse step for image and label with the SAME noise z (label noise scaled by d_i)."""
    x = c1 * x0_hat + c2 * x_t
    y = c1 * y0_hat + c2 * y_t
    if z is not None and sigma2 > 0:
        sd = math.sqrt(sigma2)
        x = x + sd * z
        y = y + (label_noise * sd) * z
    return x, y
