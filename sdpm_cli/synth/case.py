"""What every phantom family returns: one synthetic study with its exact lesion truth."""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk

LABEL_RULE = ("a voxel is lesion when the lesion's partial-volume fraction in it (averaged over the slice "
              "thickness on the acquired grid) is >= 0.5; volume_ml = label voxels x voxel volume")


@dataclass
class SynthCase:
    image: sitk.Image            # int16 HU, axial, identity direction
    label: sitk.Image            # uint8 0/1/2 on exactly the image's grid
    meta: dict
    tissue: sitk.Image | None = None  # uint8 tissue classes (anatomy.TISSUE_CLASSES) when cfg.with_tissue
