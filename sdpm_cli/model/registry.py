"""Where released checkpoints live, so `sdpm segment` finds the default model with no flags, and
what a release says about its own use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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


@dataclass(frozen=True)
class Validation:
    """A checkpoint header's `validation` block: what the model may be used for and, where its makers
    measured it falling short, the one line that says so with the figures (models/MODEL_CARD.md).
    Empty strings when a header says nothing (a model trained locally)."""

    intended_use: str = ""  # "research" for the shipped model
    caveat: str = ""  # printed as a warning wherever the model is loaded, carried by every report

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> "Validation":
        block = header.get("validation") or {}
        return cls(intended_use=str(block.get("intended_use", "") or ""), caveat=str(block.get("caveat", "") or ""))
