"""QC preview: PNG written atomically, lesion slices chosen, radiological orientation whatever the storage."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected, UsageError
from sdpm_cli.outputs.preview import choose_slices, display_volume, render_preview, write_preview

PNG = b"\x89PNG\r\n\x1a\n"


def head(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), shape=(10, 32, 40)):
    """HU image and labels on the same grid; a hemorrhage at physical x > 0 (the patient's LEFT in LPS)."""
    hu = np.full(shape, 35, np.int16)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.8, 0.6, 5.0))
    img.SetDirection(direction)
    # put the physical origin so that the grid is centred on x = y = 0
    d = np.array(direction, float).reshape(3, 3)
    half = d @ (np.array([shape[2] - 1, shape[1] - 1, 0]) * np.array(img.GetSpacing()) / 2)
    img.SetOrigin(tuple(-half))
    lab = np.zeros(shape, np.uint8)
    for k in range(shape[0]):
        for j in range(shape[1]):
            for i in range(shape[2]):
                x, y, _ = img.TransformIndexToPhysicalPoint((i, j, k))
                if 3 <= k <= 5 and x > 5 and abs(y) < 4:
                    lab[k, j, i] = 2
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(img)
    return img, labels


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, -1)])
def test_patient_left_is_on_image_right(direction):
    img, labels = head(direction)
    vol = display_volume(img, labels)
    cols = np.nonzero(vol.labels.any(axis=(0, 1)))[0]
    width = vol.labels.shape[2]
    assert cols.size and cols.min() > width // 2  # the left-sided lesion shows on the right half
    assert np.all(np.diff(vol.z_mm) > 0)  # inferior to superior


def test_choose_slices():
    lab = np.zeros((30, 4, 4), np.uint8)
    assert choose_slices(lab, 12) == [13, 14, 15, 16]  # no lesion: central slices
    lab[5:25, 1, 1] = 1
    lab[17, :, :] = 2  # the largest slice
    picked = choose_slices(lab, 6)
    assert len(picked) == 6 and 17 in picked and all(5 <= k < 25 for k in picked)
    assert choose_slices(lab[:8], 12) == [5, 6, 7]


def test_png_written_with_volumes_and_legend(tmp_path):
    img, labels = head()
    vols = {"infarct": 0.0, "hemorrhage": 1.234}
    fig = render_preview(img, labels, volumes_ml=vols)
    texts = [t.get_text() for t in fig.texts] + [fig._suptitle.get_text()]
    assert any("hemorrhage: 1.2 mL" in t and "infarct: 0.0 mL" in t for t in texts)
    assert any("patient left on image right" in t for t in texts)
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert legend == ["infarct", "hemorrhage"]
    assert sum(1 for ax in fig.axes if ax.images) == 3  # slices 3, 4, 5 hold the lesion
    dest = write_preview(img, labels, tmp_path / "qc.png", volumes_ml=vols)
    assert dest.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["qc.png"]  # no temporary left behind


def test_the_footer_says_what_the_model_may_be_used_for():
    from types import SimpleNamespace

    from sdpm_cli.model.registry import Validation
    from sdpm_cli.outputs.preview import model_note

    research = SimpleNamespace(name="sdpm-default", validation=Validation("research", "phantoms only"))
    note = model_note(research)
    assert note.startswith("model sdpm-default: research use only")
    assert model_note(SimpleNamespace(name="local", validation=Validation())) == ""
    img, labels = head()
    fig = render_preview(img, labels, volumes_ml={"infarct": 0.0, "hemorrhage": 1.0}, note=note)
    footer = [t.get_text() for t in fig.texts if "patient left on image right" in t.get_text()]
    assert len(footer) == 1 and footer[0].startswith(note)


def test_refusals(tmp_path):
    img, labels = head()
    dest = tmp_path / "qc.png"
    dest.write_bytes(b"keep")
    with pytest.raises(UsageError):
        write_preview(img, labels, dest, volumes_ml={})
    assert dest.read_bytes() == b"keep"
    moved = sitk.Image(labels)
    moved.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(InputRejected, match="not on the image grid"):
        write_preview(img, moved, tmp_path / "other.png", volumes_ml={})
    assert not (tmp_path / "other.png").exists()


def test_empty_mask_preview_defaults_volumes(tmp_path):
    img, labels = head()
    empty = sitk.Image(labels.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(labels)
    dest = write_preview(img, empty, tmp_path / "qc.png")
    assert dest.read_bytes()[:8] == PNG
