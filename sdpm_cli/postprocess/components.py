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

A rule may also ask a lesion to differ from its mirror image across the head's mid-sagittal line in
its class's direction (`min_mirror_contrast_hu`; postprocess.symmetry): blood is brighter than the
other side, an infarct darker. A symmetric structure the network took for a lesion (a bilateral
calcification's partial volume, the skull base) has no contrast against its mirror. The criterion is
applied only where the study's HU and brain mask are given (`MirrorContext`) and the contrast is
known; label files alone (a baseline's predictions) are filtered without it.

The price is stated, not hidden: a real lesion smaller than the thresholds (a lacune is < 15 mm by
definition) is removed too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from sdpm_cli.labels import CLASSES, CONNECTIVITY_26
from sdpm_cli.postprocess.symmetry import MirrorContext


@dataclass(frozen=True)
class ComponentRule:
    min_ml: float = 0.0
    min_extent_mm: float = 0.0
    min_peak_prob: float = 0.0  # 0 = no probability criterion (a checkpoint written before it has none)
    min_mirror_contrast_hu: Optional[float] = None  # None = no mirror criterion (postprocess.symmetry)

    def __post_init__(self) -> None:
        if self.min_ml < 0 or self.min_extent_mm < 0:
            raise ValueError("component thresholds must be >= 0")
        if not 0.0 <= self.min_peak_prob <= 1.0:
            raise ValueError("min_peak_prob must lie in [0, 1]")
        if self.min_mirror_contrast_hu is not None and not np.isfinite(self.min_mirror_contrast_hu):
            raise ValueError("min_mirror_contrast_hu must be a finite number of HU (or absent)")

    @property
    def judges_mirror(self) -> bool:
        return self.min_mirror_contrast_hu is not None

    @property
    def active(self) -> bool:
        return self.min_ml > 0 or self.min_extent_mm > 0 or self.min_peak_prob > 0 or self.judges_mirror

    def passes(self, n_voxels: int, voxel_ml: float, extent_mm: float, peak_prob: Optional[float] = None,
               mirror_hu: Optional[float] = None) -> bool:
        """Whether one component is kept. peak_prob None: the probability criterion is not applied;
        mirror_hu (the contrast against the mirror image in the class's direction) None or NaN: the
        mirror criterion is not applied (no HU given, or the contrast is unknown)."""
        return (n_voxels * voxel_ml >= self.min_ml and extent_mm >= self.min_extent_mm
                and (peak_prob is None or peak_prob >= self.min_peak_prob)
                and (not self.judges_mirror or mirror_hu is None or np.isnan(mirror_hu)
                     or mirror_hu >= self.min_mirror_contrast_hu))


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
        def kept(k: str, v) -> bool:  # criteria that are off are left out (older readers know none)
            return not ((k == "min_peak_prob" and v == 0) or (k == "min_mirror_contrast_hu" and v is None))

        return {name: {k: v for k, v in asdict(rule).items() if kept(k, v)} for name, rule in self.rules.items()}

    @property
    def active(self) -> bool:
        return any(r.active for r in self.rules.values())

    @property
    def judges_peaks(self) -> bool:
        """Whether a rule needs the class probabilities (min_peak_prob)."""
        return any(r.min_peak_prob > 0 for r in self.rules.values())

    @property
    def judges_mirror(self) -> bool:
        """Whether a rule needs the study's HU and brain mask (min_mirror_contrast_hu)."""
        return any(r.judges_mirror for r in self.rules.values())

    def rule(self, label: int) -> ComponentRule:
        return self.rules.get(CLASSES[label], ComponentRule())


def component_table(mask: np.ndarray, dz_mm: float, prob: Optional[np.ndarray] = None,
                    mirror: Optional[MirrorContext] = None, label: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label the 26-connected components of `mask` [Z, Y, X]; returns (labels, stats) with one row per
    component: [voxels, extent along the slice axis in mm, peak of `prob` (NaN without it), contrast
    against the mirror image in class `label`'s direction (NaN without `mirror`, or unknown)]."""
    lab, n = ndimage.label(np.asarray(mask, dtype=bool), structure=CONNECTIVITY_26)
    stats = np.full((n, 4), np.nan)
    if n:
        stats[:, 0] = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        stats[:, 1] = [(sl[0].stop - sl[0].start) * dz_mm for sl in ndimage.find_objects(lab)]
        if prob is not None:
            stats[:, 2] = ndimage.maximum(np.asarray(prob, dtype=np.float32), lab, index=np.arange(1, n + 1))
        if mirror is not None:
            stats[:, 3] = mirror.contrasts(lab, label)
    return lab, stats


def component_keep(mask: np.ndarray, rule: ComponentRule, voxel_ml: float, dz_mm: float,
                   prob: Optional[np.ndarray] = None, mirror: Optional[MirrorContext] = None,
                   label: int = 0) -> np.ndarray:
    """Boolean mask [Z, Y, X] of the components of `mask` that pass `rule` (slice axis first).

    `prob` [Z, Y, X] is the class probability the mask was thresholded from; without it a rule's
    `min_peak_prob` is not applied. `mirror` (the study's HU, brain and midline on the same grid)
    and the class `label` give the mirror contrast; without them `min_mirror_contrast_hu` is not
    applied."""
    mask = np.asarray(mask, dtype=bool)
    if not rule.active or not mask.any():
        return mask.copy()
    lab, stats = component_table(mask, dz_mm, prob if rule.min_peak_prob > 0 else None)
    keep = np.zeros(len(stats) + 1, dtype=bool)

    def passes(row: np.ndarray) -> bool:
        v, e, p, m = row
        return rule.passes(int(v), voxel_ml, e, None if np.isnan(p) else float(p), m)

    keep[1:] = [passes(row) for row in stats]
    if mirror is not None and rule.judges_mirror and label and keep.any():
        # the mirror test only for the components that pass everything else (the costly part); their
        # mirrors still exclude every component of the mask, as in component_table
        cand = np.flatnonzero(keep[1:]) + 1
        renum = np.zeros(len(keep), dtype=np.int32)
        renum[cand] = np.arange(1, len(cand) + 1)
        stats[cand - 1, 3] = mirror.contrasts(renum[lab], label, exclude=mask)
        keep[cand] = [passes(stats[k - 1]) for k in cand]
    return keep[lab]


def filter_class_masks(masks: np.ndarray, flt: LesionFilter, voxel_ml: float, dz_mm: float,
                       probs: Optional[np.ndarray] = None, mirror: Optional[MirrorContext] = None) -> np.ndarray:
    """Apply the filter to class masks [..., C, Z, Y, X] (leading axes, e.g. samples, are independent).

    `probs` [C, Z, Y, X]: the mode's class probabilities, shared by every leading index (a diffusion
    sample's lesion is judged by the same peak probability as the mask's); `mirror`: the study's
    HU, brain mask and midline on the masks' grid (the mirror criterion)."""
    out = np.array(masks, dtype=bool, copy=True)
    if not flt.active:
        return out
    lead = out.shape[:-4]
    for idx in np.ndindex(*lead):
        for c in range(out.shape[-4]):
            rule = flt.rule(c + 1)
            if rule.active:
                out[idx + (c,)] = component_keep(out[idx + (c,)], rule, voxel_ml, dz_mm,
                                                 None if probs is None else probs[c], mirror, c + 1)
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
