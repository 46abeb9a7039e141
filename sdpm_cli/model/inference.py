"""How to read a label out of the model: the inference configuration and its presets, as data.

Plain data and arithmetic, no torch: a run through the ONNX companion (`model.onnx_net`) configures
itself without importing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from sdpm_cli.errors import UsageError
from sdpm_cli.modes import DEFAULT_MODE, MODES


@dataclass(frozen=True)
class InferenceConfig:
    """How to read a label out of the model; the presets below are plain instances of this."""

    mode: str = DEFAULT_MODE
    preset: str = "custom"
    T_w: Optional[int] = None  # salient window [0, T_w) in steps; None = T // 8 (62 of 500)
    gamma: float = 1.0  # salient weights 1 - (t / T_w) ** gamma
    salient_samples: int = 4  # N repeats of the salient estimate
    salient_steps: Optional[int] = 2  # timesteps per repeat (stratified by weight); None = all T_w
    T_i: Optional[int] = None  # infer starts at DDPM step T_i (index T_i - 1); None = T // 2
    d_i: float = 1.0  # scale of the noise injected into the label at each infer step
    infer_samples: int = 4  # N runs of Algorithm 1
    steps: Optional[int] = 2  # network calls per infer run (strided chain); None = every step
    threshold: float = 0.5
    cleanup: bool = True
    cleanup_radius: int = 3
    clamp: bool = True  # clamp x0_hat and y0_hat to [-1, 1] inside the chain (the paper does)
    max_batch: int = 64  # images per sampler chunk (bounds memory)
    # Pixels per network call on a CPU (GPUs take a whole chunk in one call). A call's activations
    # (16 channels at the model grid's full resolution, a few alive at once) stay in the caches for a
    # few 160 x 160 slices; calls of 64 spill them and cost 2.6x more per slice on 2 cores (56.8 ->
    # 22.1 ms with both heads, 32.4 -> 15.3 ms with the noise head; `benchmarks/call_batch.py`), and
    # calls of 4 gave outputs bit-identical to calls of 64 there.
    cpu_call_pixels: int = 4 * 160 * 160
    # Gating (pipeline): the stochastic modes run only on slices where `out`'s probability reaches
    # gate_threshold over at least gate_min_area_mm2 of the slice, plus the gate_margin slices either
    # side where `out` reaches gate_margin_threshold over the same area (0 = every margin slice);
    # elsewhere every mode takes `out`'s answer. Chosen on 30 validation studies of both families
    # (BENCHMARKS.md "A gate that agrees with the ungated run"), the cheapest of the gates measured
    # whose `union` equals the ungated one on all 30: the stochastic modes grow a false bleed out of a
    # few `out` pixels at 0.3-0.5, so the previous 0.5 / 25 mm2 gate (every margin slice) dropped one
    # (0.33 mL) and shrank two (by 1.9-2.0%) on 3 of the 20 lesion-free studies. Most margin slices hold
    # nothing near a lesion: the margin's own threshold spends no calls there.
    gate: bool = True
    gate_threshold: float = 0.3
    gate_min_area_mm2: float = 2.0
    gate_margin: int = 1
    gate_margin_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode '{self.mode}' (choose from {', '.join(MODES)})")
        for name in ("salient_samples", "infer_samples", "max_batch", "cleanup_radius", "cpu_call_pixels"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1")
        for name in ("salient_steps", "steps", "T_w", "T_i"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UsageError(f"{name} must be >= 1")
        if not 0.0 < self.threshold < 1.0:
            raise UsageError("threshold must be between 0 and 1")
        if not 0.0 <= self.gate_threshold <= self.threshold or self.gate_margin < 0 or self.gate_min_area_mm2 < 0:
            raise UsageError("gate_threshold must be in [0, threshold], gate_margin and gate_min_area_mm2 >= 0")
        if not 0.0 <= self.gate_margin_threshold <= self.gate_threshold:
            raise UsageError("gate_margin_threshold must be in [0, gate_threshold]")
        if not 0.0 <= self.d_i <= 1.0:
            raise UsageError("d_i must be between 0 and 1")

    def window(self, T: int) -> int:
        return min(self.T_w if self.T_w is not None else T // 8, T)

    def start(self, T: int) -> int:
        return min(self.T_i if self.T_i is not None else T // 2, T)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def gate_dict(self) -> dict:
        """The gate's settings as a report records them (so a gated run can be reproduced and told
        apart from an ungated one; `enabled` False = every brain slice ran every mode)."""
        return {"enabled": bool(self.gate), "threshold": self.gate_threshold,
                "min_area_mm2": self.gate_min_area_mm2, "margin": self.gate_margin,
                "margin_threshold": self.gate_margin_threshold}


# Presets are data: change them here (or pass overrides) without touching the sampler code.
# `paper`: the published settings (N = 100 salient repeats over every t < T/8, N = 50 runs of
# Algorithm 1 from T/2 with every step). `fast`: chosen by measurement (README "The model").
PRESETS: dict[str, InferenceConfig] = {
    "paper": InferenceConfig(
        preset="paper", T_w=None, gamma=1.0, salient_samples=100, salient_steps=None,
        T_i=None, d_i=1.0, infer_samples=50, steps=None,
    ),
    # T_i = 25 (T/20, the authors' code), not T/2: on validation slices of the shipped model `infer`
    # found no infarct from T/2 (Dice 0.00) and matched `out` from 25 (0.72; README "The model").
    "fast": InferenceConfig(
        preset="fast", T_w=None, gamma=1.0, salient_samples=4, salient_steps=2,
        T_i=25, d_i=1.0, infer_samples=4, steps=2,
    ),
}


def make_config(mode: str = DEFAULT_MODE, preset: str = "fast", steps: Optional[int] = None,
                samples: Optional[int] = None, **overrides) -> InferenceConfig:
    """A preset with a mode and optional overrides: `steps` = infer chain calls, `samples` = repeats
    of both salient and infer."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    changes: dict = {"mode": mode, **overrides}
    if steps is not None:
        changes["steps"] = steps
    if samples is not None:
        changes["salient_samples"] = samples
        changes["infer_samples"] = samples
    return dataclasses.replace(PRESETS[preset], **changes)


def cpu_call_rows(h: int, w: int, cpu_pixels: int) -> int:
    """Images of h x w per network call on a CPU (`InferenceConfig.cpu_call_pixels`), at least one."""
    return max(1, cpu_pixels // (h * w))


def chain_length(t_start: int, steps: Optional[int]) -> int:
    """Network calls of a chain from index t_start to 0 in `steps` calls (None = every step): the
    length of `diffusion.step_indices(t_start, steps)`, without torch. With steps <= t_start the
    indices are `steps` rounded points of a grid spaced more than 1 apart, so all distinct."""
    if t_start < 0:
        raise ValueError("t_start must be >= 0")
    if steps is not None and steps < 1:
        raise ValueError("a chain needs at least one step")
    return t_start + 1 if steps is None else min(steps, t_start + 1)


def calls_per_slice(cfg: InferenceConfig, T: int) -> dict[str, int]:
    """Network calls (encoder passes) per slice for each mode under this configuration."""
    tw = cfg.window(T)
    k_sal = tw if cfg.salient_steps is None or cfg.salient_steps >= tw else cfg.salient_steps
    n_inf = chain_length(cfg.start(T) - 1, cfg.steps)
    c = {"out": 1, "salient": cfg.salient_samples * k_sal, "infer": cfg.infer_samples * n_inf}
    c["union"] = c["out"] + c["salient"] + c["infer"]
    return c
