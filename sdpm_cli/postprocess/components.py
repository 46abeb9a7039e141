"""Drop predicted lesions too small or too thin to trust: a 3-D connected-component filter.

The network reads one slice at a time, so a false positive is usually a patch of one or two slices,
while a true territorial infarct or a haematoma spans many. A predicted lesion (26-connected
component of one class) is kept only if its volume reaches `min_ml` and its extent along the slice
axis (slices spanned x slice spacing) reaches `min_extent_mm`, and (when the class probability is
given) its most confident voxel reaches `min_peak_prob`: a true lesion has a core the network is
sure of, a false one may be a faint patch just above the 0.5 mask threshold (hysteresis
thresholding, as in edge detection; for the shipped model it is not - its false lesions are
confident, measured in the model card - so its rules have no peak criterion). The thresholds are data, chosen per
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
    min_peak_prob: float = 0.0  # 0 = no probability criterion (a checkpoint written before it has none)

    def __post_init__(self) -> None:
        if self.min_ml < 0 or self.min_extent_mm < 0:
            raise ValueError("component thresholds must be >= 0")
        if not 0.0 <= self.min_peak_prob <= 1.0:
            raise ValueError("min_peak_prob must lie in [0, 1]")

    @property
    def active(self) -> bool:
        return self.min_ml > 0 or self.min_extent_mm > 0 or self.min_peak_prob > 0

    def passes(self, n_voxels: int, voxel_ml: float, extent_mm: float, peak_prob: Optional[float] = None) -> bool:
        """Whether one component is kept (peak_prob None: the probability criterion is not applied)."""
        return (n_voxels * voxel_ml >= self.min_ml and extent_mm >= self.min_extent_mm
                and (peak_prob is None or peak_prob >= self.min_peak_prob))


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
        return {name: {k: v for k, v in asdict(rule).items() if k != "min_peak_prob" or v > 0}
                for name, rule in self.rules.items()}

    @property
    def active(self) -> bool:
        return any(r.active for r in self.rules.values())

    @property
    def judges_peaks(self) -> bool:
        """Whether a rule needs the class probabilities (min_peak_prob)."""
        return any(r.min_peak_prob > 0 for r in self.rules.values())

    def rule(self, label: int) -> ComponentRule:
        return self.rules.get(CLASSES[label], ComponentRule())


def component_table(mask: np.ndarray, dz_mm: float, prob: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Label the 26-connected components of `mask` [Z, Y, X]; returns (labels, stats) with one row per
    component: [voxels, extent along the slice axis in mm, peak of `prob` (NaN without it)]."""
    lab, n = ndimage.label(np.asarray(mask, dtype=bool), structure=CONNECTIVITY_26)
    stats = np.full((n, 3), np.nan)
    if n:
        stats[:, 0] = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        stats[:, 1] = [(sl[0].stop - sl[0].start) * dz_mm for sl in ndimage.find_objects(lab)]
        if prob is not None:
            stats[:, 2] = ndimage.maximum(np.asarray(prob, dtype=np.float32), lab, index=np.arange(1, n + 1))
    return lab, stats


def component_keep(mask: np.ndarray, rule: ComponentRule, voxel_ml: float, dz_mm: float,
                   prob: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean mask [Z, Y, X] of the components of `mask` that pass `rule` (slice axis first).

    `prob` [Z, Y, X] is the class probability the mask was thresholded from; without it a rule's
    `min_peak_prob` is not applied."""
    mask = np.asarray(mask, dtype=bool)
    if not rule.active or not mask.any():
        return mask.copy()
    lab, stats = component_table(mask, dz_mm, prob if rule.min_peak_prob > 0 else None)
    keep = np.zeros(len(stats) + 1, dtype=bool)
    keep[1:] = [rule.passes(int(v), voxel_ml, e, None if np.isnan(p) else float(p)) for v, e, p in stats]
    return keep[lab]


def filter_class_masks(masks: np.ndarray, flt: LesionFilter, voxel_ml: float, dz_mm: float,
                       probs: Optional[np.ndarray] = None) -> np.ndarray:
    """Apply the filter to class masks [..., C, Z, Y, X] (leading axes, e.g. samples, are independent).

    `probs` [C, Z, Y, X]: the mode's class probabilities, shared by every leading index (a diffusion
    sample's lesion is judged by the same peak probability as the mask's)."""
    out = np.array(masks, dtype=bool, copy=True)
    if not flt.active:
        return out
    lead = out.shape[:-4]
    for idx in np.ndindex(*lead):
        for c in range(out.shape[-4]):
            rule = flt.rule(c + 1)
            if rule.active:
                out[idx + (c,)] = component_keep(out[idx + (c,)], rule, voxel_ml, dz_mm,
                                                 None if probs is None else probs[c])
    return out


@dataclass(frozen=True)
class Component:
    """One lesion as a voxel set: a 26-connected component of one label value, numbered 1.. per
    label, largest first (ties by the z, y, x of its box's first corner). Every consumer (volumes,
    report rows, ABC/2, locations, the compare view's id map) reads these, so they cannot disagree."""

    label: int
    id: int
    n_voxels: int
    lo: tuple[int, int, int]  # inclusive (x, y, z) box
    hi: tuple[int, int, int]
    crop: tuple[slice, slice, slice]  # (z, y, x) slices of the label array holding the box
    mask: np.ndarray  # bool, the component inside `crop`

    @property
    def key(self) -> tuple:
        """(label, inclusive x/y/z box, voxels): how rows, locations and lesions are matched."""
        return (self.label, (self.lo, self.hi), self.n_voxels)


def label_counts(arr: np.ndarray) -> dict[int, int]:
    """Voxels per non-zero value of a non-negative integer label array (a count, not a sort, when
    the values are small, as lesion labels are)."""
    arr = np.asarray(arr)
    vals = arr[arr != 0]  # lesion voxels only: few, whatever the head's size
    if vals.size == 0:
        return {}
    if vals.max() < 65536:
        counts = np.bincount(vals)
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    uniq, counts = np.unique(vals, return_counts=True)
    return {int(v): int(n) for v, n in zip(uniq, counts)}


def label_components(arr: np.ndarray, min_voxels: int = 1, values: Optional[list[int]] = None) -> list[Component]:
    """Every lesion of a label array [Z, Y, X] with at least `min_voxels` voxels, by label then id.

    Components are labelled inside the box of the non-zero voxels only (lesions are a small part of
    a head), which gives the same components, sizes and numbering as labelling the whole array."""
    arr = np.asarray(arr)
    values = sorted(label_counts(arr) if values is None else values)
    out: list[Component] = []
    if not values:
        return out
    nz = arr != 0
    box = []
    for ax in range(arr.ndim):
        hit = np.flatnonzero(nz.any(axis=tuple(a for a in range(arr.ndim) if a != ax)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0))
    del nz
    sub_arr = arr[tuple(box)]
    z0, y0, x0 = (b.start for b in box)
    for v in values:
        comp, _ = ndimage.label(sub_arr == v, structure=CONNECTIVITY_26)
        found = []
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is None:
                continue
            m = comp[sl] == k
            n = int(np.count_nonzero(m))
            if n < min_voxels:
                continue
            crop = (slice(sl[0].start + z0, sl[0].stop + z0), slice(sl[1].start + y0, sl[1].stop + y0),
                    slice(sl[2].start + x0, sl[2].stop + x0))
            lo = (crop[2].start, crop[1].start, crop[0].start)
            hi = (crop[2].stop - 1, crop[1].stop - 1, crop[0].stop - 1)
            found.append((n, lo, hi, crop, m))
        del comp
        found.sort(key=lambda f: (-f[0], f[1][::-1]))
        out += [Component(v, i, n, lo, hi, crop, m) for i, (n, lo, hi, crop, m) in enumerate(found, start=1)]
    return out
