"""Labels from a teacher model for some classes: fine-tune one class without moving another.

Every fine-tune of the shipped model that improved one class moved the other: blood emphasis
(models/MODEL_CARD.md, p3b) found more subdurals and also more false infarct, and two runs that
differ only in their random course differ by 2-5 mL of false infarct per lesion-free head (p2d4 and
its control). With a teacher, the channels of the named classes are trained towards the teacher's
own `out` answer on the same augmented patch (y0_hat at t = 0, clamped to [-1, 1], -1 outside the
brain as at inference) instead of the truth, so those classes are held where the teacher has them
(learning without forgetting, Li & Hoiem 2017) while the others learn from the truth.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from sdpm_cli.labels import CLASSES
from sdpm_cli.errors import UsageError


def class_channels(names: Sequence[str]) -> list[int]:
    """Label channels (0-based) of class names; refuses an unknown name."""
    by_name = {n: c - 1 for c, n in CLASSES.items()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UsageError(f"--teacher-classes: unknown class {', '.join(unknown)} (choose from {', '.join(by_name)})")
    return sorted({by_name[n] for n in names})


def teacher_labels(teacher: torch.nn.Module, sched, x0: Tensor, y0: Tensor, channels: Sequence[int],
                   brain: Optional[Tensor] = None, cond: Optional[Tensor] = None) -> Tensor:
    """y0 [B,C,H,W] in [-1, 1] with `channels` replaced by the teacher's `out` answer on x0 [B,1,H,W]
    (its clean conditioning channels `cond`), -1 where `brain` [B,H,W] is False."""
    from sdpm_cli.model.diffusion import predict_z0

    if not channels:
        return y0
    with torch.no_grad():
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        eps_hat, yt_hat = teacher(x0, t, need_label=True) if cond is None else teacher(x0, t, need_label=True, cond=cond)
        y_t = predict_z0(yt_hat, t, eps_hat, sched).clamp(-1.0, 1.0).to(y0.dtype)
        if brain is not None:
            y_t = torch.where(brain.to(torch.bool).unsqueeze(1), y_t, torch.full_like(y_t, -1.0))
    out = y0.clone()
    idx = list(channels)
    out[:, idx] = y_t[:, idx]
    return out
