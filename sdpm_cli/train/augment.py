"""On-the-fly 2-D augmentation of (image, label, brain) patches.

Small pure functions on tensors. Every random draw comes from one `torch.Generator` passed in, so a
run (and a resumed run) is reproducible. The image is resampled linearly, labels and the brain mask
with nearest neighbour, so labels stay in {0, 1, 2}. Intensity changes and noise touch only brain
pixels: outside the brain the preprocessing writes -1, and the network must keep seeing that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (0 disables one)."""

    flip_lr: float = 0.5  # probability of a left-right mirror (stroke occurs on either side)
    rotate_deg: float = 15.0  # uniform in [-r, r]: head positioning in the gantry varies
    scale: float = 0.2  # zoom uniform in [1 - s, 1 + s]: head size and field-of-view vary
    noise_std: float = 0.03  # Gaussian noise sigma uniform in [0, noise_std] (window units; 0.03 ~ 2 HU)
    intensity_scale: float = 0.1  # contrast factor uniform in [1 - v, 1 + v]: kernels and scanners differ
    intensity_shift: float = 0.05  # offset uniform in [-v, v] (~3 HU): calibration drift
    gamma: float = 0.15  # monotone contrast curve v^g on (x+1)/2, log g uniform in +-log(1+gamma): tissue ordering kept
    blur_prob: float = 0.25  # share of patches blurred inside the brain (softer kernels, coarser in-plane resolution)
    blur_max_px: float = 1.2  # Gaussian sigma uniform in [0, blur_max_px] model pixels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in asdict(self).values())


def affine_matrices(flip: torch.Tensor, angle_rad: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """[B, 2, 3] sampling matrices (output -> input normalised coordinates) for `F.affine_grid`.

    A zoom > 1 enlarges the content (samples a smaller input area); flip mirrors x (left-right).
    """
    c, s = torch.cos(angle_rad) / zoom, torch.sin(angle_rad) / zoom
    sx = torch.where(flip, -1.0, 1.0)
    zero = torch.zeros_like(c)
    return torch.stack([torch.stack([c * sx, -s, zero], -1), torch.stack([s * sx, c, zero], -1)], 1)


def warp(x: torch.Tensor, masks: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample images [B,1,H,W] (linear, background -1) and masks [B,K,H,W] (nearest, background 0)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    xw = F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    mw = F.grid_sample(masks.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return xw, mw.round().to(masks.dtype)


def intensity(x: torch.Tensor, brain: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Contrast/offset/noise inside the brain [B,H,W] (per-sample gain, offset [B]); clipped to [-1, 1]."""
    g, o = gain.view(-1, 1, 1, 1), offset.view(-1, 1, 1, 1)
    changed = (x * g + o + noise).clamp_(-1.0, 1.0)
    return torch.where(brain.bool().unsqueeze(1), changed, x)


def brain_blur(x: torch.Tensor, brain: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur inside the brain (normalised convolution: the -1 outside never leaks in);
    every channel of x [B,K,H,W] with the sample's sigma."""
    if x.shape[1] > 1:
        return torch.cat([brain_blur(x[:, k : k + 1], brain, sigma) for k in range(x.shape[1])], 1)
    B = x.shape[0]
    r = 3
    k = torch.arange(-r, r + 1, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).view(B, 1)
    w = torch.exp(-0.5 * (k.view(1, -1) / s) ** 2)
    w = w / w.sum(1, keepdim=True)  # [B, 2r+1]
    m = brain.unsqueeze(1).to(x.dtype)
    num = torch.cat([(x + 1.0) * m, m], 1).reshape(1, 2 * B, *x.shape[-2:])  # groups: one per (sample, channel)
    wk = w.repeat_interleave(2, 0)
    num = F.conv2d(F.pad(num, (r, r, 0, 0), mode="replicate"), wk.view(2 * B, 1, 1, -1), groups=2 * B)
    num = F.conv2d(F.pad(num, (0, 0, r, r), mode="replicate"), wk.view(2 * B, 1, -1, 1), groups=2 * B)
    num = num.reshape(B, 2, *x.shape[-2:])
    blurred = num[:, :1] / num[:, 1:].clamp_min(1e-6) - 1.0
    keep = (sigma > 0.05).view(B, 1, 1, 1) & m.bool()
    return torch.where(keep, blurred, x)


def augment(
    x: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flip/rotation/zoom, then intensity and noise; x [B,1+K,H,W] float, labels/brain [B,H,W].

    Channels after the first (the mirror image) get the same geometry, blur, gamma, gain and offset
    as the image - a scanner changes both sides of a head alike - and noise of their own; where a
    conditioning channel says "no mirror" (-1) it keeps saying so.
    """
    B = x.shape[0]
    u = torch.rand(B, 9, generator=generator, dtype=torch.float64).to(torch.float32)
    noise = torch.randn(x.shape, generator=generator)
    if not cfg.enabled:
        return x, labels, brain
    flip = u[:, 0] < cfg.flip_lr
    angle = (2 * u[:, 1] - 1) * math.radians(cfg.rotate_deg)
    zoom = 1.0 + (2 * u[:, 2] - 1) * cfg.scale
    masks = torch.stack([labels, brain], 1)
    if cfg.rotate_deg > 0 or cfg.scale > 0:
        x, masks = warp(x, masks, affine_matrices(flip, angle, zoom))
    elif cfg.flip_lr > 0:
        x, masks = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x), torch.where(flip.view(-1, 1, 1, 1), masks.flip(-1), masks)
    labels, brain = masks[:, 0], masks[:, 1]
    none = x[:, 1:] <= -1.0  # conditioning pixels without a mirror (after the warp, before any blur)
    gain = 1.0 + (2 * u[:, 3] - 1) * cfg.intensity_scale
    offset = (2 * u[:, 4] - 1) * cfg.intensity_shift
    sigma = (u[:, 5] * cfg.noise_std).view(-1, 1, 1, 1)
    if cfg.blur_prob > 0:
        x = brain_blur(x, brain, torch.where(u[:, 6] < cfg.blur_prob, u[:, 7] * cfg.blur_max_px, 0.0))
    if cfg.gamma > 0:
        g = torch.exp((2 * u[:, 8] - 1) * math.log1p(cfg.gamma)).view(-1, 1, 1, 1)
        x = torch.where(brain.bool().unsqueeze(1), ((x + 1.0) / 2.0).clamp_min(0.0) ** g * 2.0 - 1.0, x)
    x = intensity(x, brain, gain, offset, noise * sigma)
    if none.numel():
        x[:, 1:] = torch.where(none, -1.0, x[:, 1:])
    return x, labels, brain


def labels_to_pm1(labels: torch.Tensor, n_classes: int = 2) -> torch.Tensor:
    """Label map [B,H,W] (0, 1..C) -> the network's label channels [B,C,H,W] in {-1, +1}."""
    cls = torch.arange(1, n_classes + 1, device=labels.device).view(1, -1, 1, 1)
    return torch.where(labels.unsqueeze(1) == cls, 1.0, -1.0)
