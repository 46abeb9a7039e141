"""A tiny analytic head for the preprocessing tests: air, head rest, scalp, skull, brain, lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass
class Head:
    image: sitk.Image  # int16 HU
    interior: np.ndarray  # bool [Z, Y, X]: everything inside the inner table (the true brain mask)
    within_outer_table: np.ndarray  # interior + skull (+ the channel of a foramen, if any)
    skull: np.ndarray
    scalp: np.ndarray
    headrest: np.ndarray
    bleed: np.ndarray  # a 70 HU hemorrhage inside the brain
    calc: np.ndarray  # a 300 HU calcification inside the brain


def build_head(
    shape=(6, 256, 256),
    spacing=(0.8, 0.8, 5.0),
    radii_mm=(70.0, 85.0),
    noise_hu=8.0,
    gap_mm=0.0,
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
    origin=(0.0, 0.0, 0.0),
    seed=0,
) -> Head:
    Z, Y, X = shape
    yy, xx = np.mgrid[0:Y, 0:X].astype(np.float64)
    cy, cx = (Y - 1) / 2.0, (X - 1) / 2.0
    ry, rx = radii_mm
    # elliptic distance in mm-normalised units: 1.0 at the inner table
    r = np.sqrt(((yy - cy) * spacing[1] / ry) ** 2 + ((xx - cx) * spacing[0] / rx) ** 2)
    inner = r < 1.0
    skull2 = (r >= 1.0) & (r < 1.0 + 7.0 / ry)
    scalp2 = (r >= 1.0 + 7.0 / ry) & (r < 1.0 + 12.0 / ry)
    if gap_mm > 0:  # a gap through the skull at the back (a foramen), filled by scalp-like tissue
        gap = (np.abs(xx - cx) * spacing[0] < gap_mm / 2) & (yy > cy)
        skull2 &= ~gap
        scalp2 |= (r >= 1.0) & (r < 1.0 + 12.0 / ry) & gap
    rest2 = (yy * spacing[1] > (cy * spacing[1] + ry + 22)) & (yy * spacing[1] < (cy * spacing[1] + ry + 28))
    hu = np.full(shape, -1000.0)
    rng = np.random.default_rng(seed)
    interior = np.broadcast_to(inner, shape).copy()
    skull = np.broadcast_to(skull2, shape).copy()
    scalp = np.broadcast_to(scalp2, shape).copy()
    headrest = np.broadcast_to(rest2, shape).copy()
    hu[headrest] = 250.0
    hu[scalp] = 40.0
    hu[skull] = 1200.0
    hu[interior] = 30.0
    d_bleed = np.hypot((yy - cy + 20 / spacing[1]) * spacing[1], (xx - cx - 25 / spacing[0]) * spacing[0])
    d_calc = np.hypot((yy - cy) * spacing[1], (xx - cx + 30 / spacing[0]) * spacing[0])
    bleed = np.zeros(shape, bool)
    calc = np.zeros(shape, bool)
    bleed[1:-1] = d_bleed < 12.0
    calc[1:-1] = d_calc < 2.5
    hu[bleed] = 70.0
    hu[calc] = 300.0
    hu += rng.normal(0.0, noise_hu, shape)
    img = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    within = np.broadcast_to(r < 1.0 + 7.0 / ry, shape).copy()
    return Head(img, interior, within, skull, scalp, headrest, bleed, calc)


def oblique_direction(angle_deg: float = 20.0, flip_y: bool = True) -> tuple[float, ...]:
    """A rotation about z (gantry-free oblique reformat) composed with a flipped row axis."""
    a = np.deg2rad(angle_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    if flip_y:
        R = R @ np.diag([1.0, -1.0, 1.0])
    return tuple(R.ravel())
