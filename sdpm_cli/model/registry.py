"""Where released checkpoints live, so `sdpm segment` finds the default model with no flags."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "sdpm-default.pt"


def model_dirs() -> list[Path]:
    """Search order: $SDPM_MODELS, the installed package data, the source checkout's models/."""
    dirs: list[Path] = []
    if os.environ.get("SDPM_MODELS"):
        dirs.append(Path(os.environ["SDPM_MODELS"]))
    dirs.append(Path(__file__).resolve().parents[1] / "shipped_models")  # installed wheel (pyproject maps models/ here)
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    return dirs


def default_model_path() -> Path | None:
    for d in model_dirs():
        p = d / DEFAULT_MODEL_NAME
        if p.is_file():
            return p
    return None
