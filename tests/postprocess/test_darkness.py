"""postprocess.darkness: a reported infarct with a CSF-dark core gets a warning; an acute-looking one does not."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from sdpm_cli.postprocess.darkness import (CSF_BELOW_HU, DARK_SHARE, dark_infarcts, infarct_darkness,
                                           parenchyma_median_hu)


def _head():
    """A 10 x 60 x 60 brain of 35 HU inside air; labels empty."""
    hu = np.full((10, 60, 60), -1000.0, np.float32)
    brain = np.zeros(hu.shape, np.uint8)
    hu[:, 5:55, 5:55] = 35.0
    brain[:, 5:55, 5:55] = 1
    return np.zeros(hu.shape, np.uint8), hu, brain


def test_parenchyma_median_ignores_air_and_bone():
    labels, hu, brain = _head()
    hu[0, 5:55, 5:8] = 1500.0  # bone inside the mask's edge
    assert parenchyma_median_hu(hu, brain) == 35.0
    assert parenchyma_median_hu(hu, np.zeros_like(brain)) is None


def test_an_old_infarct_core_is_flagged_and_an_acute_infarct_is_not():
    labels, hu, brain = _head()
    # acute: 20 x 10 pixels, 6 HU below the parenchyma throughout
    hu[2:8, 8:28, 10:20] = 29.0
    labels[2:8, 8:28, 10:20] = 1
    # old: 20 x 20 pixels whose inner 10 x 10 core is CSF (5 HU) inside a 29 HU rim the network also took
    hu[2:8, 30:50, 30:50] = 29.0
    hu[2:8, 35:45, 35:45] = 5.0
    labels[2:8, 30:50, 30:50] = 1
    found = infarct_darkness(labels, hu, brain, voxel_ml=0.5, pixel_mm=(1.0, 1.0))
    assert [round(d.volume_ml, 3) for d in found] == [1200.0, 600.0]  # largest first: 6*20*20, 6*20*10 voxels
    old, acute = found
    assert acute.csf_share == 0.0 and acute.median_hu == 29.0
    # the smoothed core: a 10 x 10 square at 5 HU, averaged over 3 x 3 (2.5 mm at 1 mm pixels):
    # 8 x 8 centre pixels stay at 5 HU, the core's edge pixels mix 5 and 29 (13 HU: still CSF-dark, 22 below)
    assert abs(old.csf_share - 100 / 400) < 1e-9
    assert old.median_hu == 29.0  # its median is that of the rim: the median alone would not tell
    assert old.slices == (2, 7)
    dark = dark_infarcts(labels, hu, brain, 0.5, pixel_mm=(1.0, 1.0))
    assert dark == [old]
    text = old.warning()
    assert "1200.0 mL" in text and "slices 3-8" in text and "25% as dark as CSF" in text and "old infarct" in text
    assert old.to_dict()["csf_dark_share"] == 0.25
    assert dark_infarcts(labels, hu, brain, 0.5, pixel_mm=(1.0, 1.0), min_share=0.26) == []
    assert 0.0 < DARK_SHARE <= 0.25 and CSF_BELOW_HU == 15.0


def test_csf_on_both_sides_is_not_lost_tissue():
    """With the midline, CSF that the other side of the head also has (sulci, ventricles) does not count."""
    from sdpm_cli.preprocess.symmetry import Midline

    labels, hu, brain = _head()
    line = Midline(cy=29.5, cx=29.5, dy=1.0, dx=0.0, cost=0.0)  # x -> 59 - x
    # a found infarct over a sulcus: CSF core at x 12-15, and the same sulcus mirrored at x 44-47
    labels[2:8, 30:50, 8:20] = 1
    hu[2:8, 30:50, 8:20] = 29.0
    hu[2:8, 30:50, 12:16] = 5.0
    hu[2:8, 30:50, 44:48] = 5.0
    # a found infarct with a CSF core the other side lacks (x 12-15 here, 35 HU at x 44-47 there)
    labels[2:8, 8:26, 8:20] = 1
    hu[2:8, 8:26, 8:20] = 29.0
    hu[2:8, 8:26, 12:16] = 5.0
    sulcus, old = infarct_darkness(labels, hu, brain, 1.0, pixel_mm=(1.0, 1.0), line=line)  # largest first
    assert sulcus.volume_ml == 6 * 20 * 12 and old.volume_ml == 6 * 18 * 12
    assert sulcus.csf_share > 0.25 and sulcus.asymmetric_share == 0.0 and sulcus.share == 0.0
    assert old.asymmetric_share == old.csf_share > 0.25
    assert [d.volume_ml for d in dark_infarcts(labels, hu, brain, 1.0, (1.0, 1.0), line=line)] == [old.volume_ml]
    assert "where the other side of the head is not" in old.warning()
    assert len(dark_infarcts(labels, hu, brain, 1.0, (1.0, 1.0))) == 2  # without a midline: both


def test_noise_alone_does_not_make_an_infarct_dark():
    labels, hu, brain = _head()
    rng = np.random.default_rng(0)
    hu[2:8, 10:40, 10:40] = 29.0 + rng.normal(0, 10, (6, 30, 30))  # an acute infarct in 10 HU noise
    labels[2:8, 10:40, 10:40] = 1
    (d,) = infarct_darkness(labels, hu, brain, 1.0, pixel_mm=(0.5, 0.5))  # 5 x 5 pixel local mean
    assert d.csf_share < 0.01
    raw = float(((hu[2:8, 10:40, 10:40] < 35.0 - CSF_BELOW_HU)).mean())
    assert raw > 0.1  # voxel by voxel, noise would have made it look dark


def test_nothing_to_judge():
    labels, hu, brain = _head()
    assert infarct_darkness(labels, hu, brain, 1.0) == []
    hu[2:8, 30:40, 30:40] = 5.0
    labels[2:8, 30:40, 30:40] = 2  # blood is not judged
    assert dark_infarcts(labels, hu, brain, 1.0) == []
    labels[labels == 2] = 1
    assert len(dark_infarcts(labels, hu, brain, 1.0)) == 1
    assert dark_infarcts(labels, hu, np.zeros_like(brain), 1.0) == []  # no parenchyma to compare with


def test_pipeline_helper_reads_images_on_the_study_grid():
    from sdpm_cli.pipeline import _dark_infarcts

    labels, hu, brain = _head()
    hu[2:8, 30:40, 30:40] = 5.0
    labels[2:8, 30:40, 30:40] = 1
    img = lambda a: sitk.GetImageFromArray(a)  # noqa: E731
    lab, ct, b = img(labels), img(hu), img(brain)
    for im in (lab, ct, b):
        im.SetSpacing((0.5, 0.5, 5.0))
    dark = _dark_infarcts(lab, ct, b)
    assert len(dark) == 1 and abs(dark[0].volume_ml - 600 * 1.25 / 1000) < 1e-9
    assert _dark_infarcts(lab, ct, brain) == dark  # a given brain mask arrives as an array
    assert _dark_infarcts(lab, ct, None) == []
