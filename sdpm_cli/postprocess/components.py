"""Drop predicted lesions too small or too thin to trust: a 3-D connected-component filter.

The network reads one slice at a time, so a false positive is usually a patch of one or two slices,
while a true territorial infarct or a haematoma spans many. A predicted lesion (26-connected
component of one class) is kept only if its volume reaches `min_ml` and its extent along the slice
axis (slices spanned x slice spacing) reaches `min_extent_mm`. The thresholds are data, chosen per
model on validation studies (benchmarks/accuracy/postprocess.py) and stored in the checkpoint
header, as nnU-Net stores its postprocessing; `sdpm segment --no-lesion-filter` turns it off.

The price is stated, not hidden: a real lesion smaller than the thresholds (a lacune is < 15 mm by
definition) is removed too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from sdpm_cli.labels import CLASSES, CONNECTIVITY_26



@dataclass(frozen=True)
class ComponentRule:
    min_ml: float = 0.0
    min_extent_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.min_ml < 0 or self.min_extent_mm < 0:
            raise ValueError("component thresholds must be >= 0")

    @property
    def active(self) -> bool:
        return self.min_ml > 0 or self.min_extent_mm > 0


@dataclass(frozen=True)
class LesionFilter:
    """Per-class rules, keyed by class name ('infarct', 'hemorrhage'); a missing class keeps all."""

    rules: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "LesionFilter":
        d = d or {}
        unknown = set(d) - set(CLASSES.values())
        if unknown:
            raise ValueError(f"lesion filter names unknown classes: {', '.join(sorted(unknown))}")
        return cls({name: ComponentRule(**rule) for name, rule in d.items()})

    def to_dict(self) -> dict:
        return {name: asdict(rule) for name, rule in self.rules.items()}

    @property
    def active(self) -> bool:
        return any(r.active for r in self.rules.values())

    def rule(self, label: int) -> ComponentRule:
        return self.rules.get(CLASSES[label], ComponentRule())


def component_keep(mask: np.ndarray, rule: ComponentRule, voxel_ml: float, dz_mm: float) -> np.ndarray:
    """Boolean mask [Z, Y, X] of the components of `mask` that pass `rule` (slice axis first)."""
    mask = np.asarray(mask, dtype=bool)
    if not rule.active or not mask.any():
        return mask.copy()
    lab, n = ndimage.label(mask, structure=CONNECTIVITY_26)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, dtype=bool)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        extent_mm = (sl[0].stop - sl[0].start) * dz_mm
        keep[i] = sizes[i] * voxel_ml >= rule.min_ml and extent_mm >= rule.min_extent_mm
    keep[0] = False
    return keep[lab]


def filter_class_masks(masks: np.ndarray, flt: LesionFilter, voxel_ml: float, dz_mm: float) -> np.ndarray:
    """Apply the filter to class masks [..., C, Z, Y, X] (leading axes, e.g. samples, are independent)."""
    out = np.array(masks, dtype=bool, copy=True)
    if not flt.active:
        return out
    lead = out.shape[:-4]
    for idx in np.ndindex(*lead):
        for c in range(out.shape[-4]):
            rule = flt.rule(c + 1)
            if rule.active:
                out[idx + (c,)] = component_keep(out[idx + (c,)], rule, voxel_ml, dz_mm)
    return out
