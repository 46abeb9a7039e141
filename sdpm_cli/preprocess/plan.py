"""The preprocessing plan: every number that turns a CT into model input, kept as data.

A checkpoint stores its plan (`to_dict`) so inference reproduces exactly the preprocessing the
network was trained with; changing a default here never silently changes a shipped model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sdpm_cli.errors import ModelError


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"expected true or false, got {v!r}")


@dataclass(frozen=True)
class PreprocessPlan:
    """Model grid, brain window and the HU thresholds of the classical brain extraction."""

    spacing_mm: float = 1.25  # in-plane model grid spacing; slices are kept as acquired
    size: int = 160  # model grid is size x size pixels, centred on the brain box
    window_level: float = 40.0  # HU -> [-1, 1] over [level - width/2, level + width/2]
    window_width: float = 120.0
    bone_hu: float = 160.0  # skull: HU above this
    soft_min_hu: float = -40.0  # intracranial soft tissue (CSF ... fresh blood ... calcified spots)
    soft_max_hu: float = 130.0
    skull_dilate_mm: float = 0.0  # grow the skull before subtracting it (drops the inner-table rim)
    skull_close_mm: float = 8.0  # bridge foramina / gaps in the skull ring before filling its interior
    min_component_ml: float = 15.0  # keep separate intracranial pieces this big (posterior fossa), drop eyes (~7 mL)
    # Thin series (slices closer than thin_slice_mm) are read as slabs of about slab_mm: consecutive
    # slices averaged in HU, as a scanner's thick reconstruction does, because the model was trained
    # on 2.5-5 mm slices; the mask goes back to every source slice of its slab. 0 turns it off.
    thin_slice_mm: float = 2.0
    slab_mm: float = 5.0
    # A second input channel: the windowed slice reflected across the head's mid-sagittal plane
    # (preprocess.symmetry), so the network compares each pixel with the same tissue on the other side.
    mirror_channel: bool = False
    # Neighbouring slices as input channels (2.5-D): the model slices `context_slices` below and above
    # each slice (the edge slice repeated past the end), so a subtle hypodensity can be judged by its
    # continuity across slices rather than from one noisy slice. 0 = the slice alone.
    context_slices: int = 0

    def __post_init__(self) -> None:
        if not (self.spacing_mm > 0 and self.size > 0 and self.window_width > 0):
            raise ValueError("PreprocessPlan needs spacing_mm > 0, size > 0 and window_width > 0")
        if not self.soft_min_hu < self.soft_max_hu:
            raise ValueError("PreprocessPlan needs soft_min_hu < soft_max_hu")
        if not 0 <= self.context_slices <= 4:
            raise ValueError("PreprocessPlan needs 0 <= context_slices <= 4")

    def slab_factor(self, slice_spacing_mm: float) -> int:
        """Source slices per model slice: 1 for slices thicker than thin_slice_mm, else ~slab_mm of them."""
        if self.thin_slice_mm <= 0 or slice_spacing_mm <= 0 or slice_spacing_mm >= self.thin_slice_mm:
            return 1
        return max(1, int(round(self.slab_mm / slice_spacing_mm)))

    @property
    def condition_channels(self) -> int:
        """Input channels besides the (diffused) image itself: the network's `cond_channels`."""
        return int(self.mirror_channel) + 2 * self.context_slices

    @property
    def window(self) -> tuple[float, float]:
        """(low, high) HU of the window."""
        return (self.window_level - self.window_width / 2.0, self.window_level + self.window_width / 2.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessPlan":
        """Rebuild a plan from a checkpoint header; unknown keys mean a newer, incompatible plan."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ModelError(f"checkpoint preprocessing plan has unknown fields: {', '.join(unknown)} (newer sdpm?)")
        try:
            kwargs = {k: (int(v) if known[k] == "int" else _flag(v) if known[k] == "bool" else float(v)) for k, v in data.items()}
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"checkpoint preprocessing plan is invalid: {exc}") from None
