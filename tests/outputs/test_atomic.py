import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.atomic import atomic_path, write_image, write_text


def test_no_overwrite_without_force(tmp_path):
    p = tmp_path / "a.txt"
    write_text(p, "one")
    with pytest.raises(UsageError, match="--force"):
        write_text(p, "two")
    assert p.read_text() == "one"
    write_text(p, "two", force=True)
    assert p.read_text() == "two"


def test_failure_leaves_nothing_behind(tmp_path):
    p = tmp_path / "mask.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_image_keeps_nifti_format(tmp_path):
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    img.SetSpacing((0.5, 0.7, 5.0))
    p = write_image(img, tmp_path / "m.nii.gz")
    back = sitk.ReadImage(str(p))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert [f.name for f in tmp_path.iterdir()] == ["m.nii.gz"]
