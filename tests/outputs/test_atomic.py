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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_the_umask_gives_any_new_file(tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        text = write_text(tmp_path / "r.json", "{}")
        img = write_image(sitk.Image(4, 4, 4, sitk.sitkUInt8), tmp_path / "m.nii.gz")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what the umask gives any other new file
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    for p in (text, img):
        assert stat.S_IMODE(p.stat().st_mode) == mode, oct(p.stat().st_mode)


def test_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", None)), real_replace(a, b))[1])
    write_text(tmp_path / "a.txt", "data")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
    assert (tmp_path / "a.txt").read_text() == "data"


def test_an_output_whose_folder_cannot_exist_is_refused_up_front(tmp_path):
    from sdpm_cli.outputs.atomic import check_distinct, check_writable

    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        check_writable(tmp_path / "file" / "deeper" / "m.nii.gz", force=False)
    check_writable(tmp_path / "new" / "deeper" / "m.nii.gz", force=False)  # folders to be made: fine
    assert not (tmp_path / "new").exists() and [p.name for p in tmp_path.iterdir()] == ["file"]  # the probe is gone
    with pytest.raises(UsageError, match="--a and --b are the same file"):
        check_distinct({"--a": tmp_path / "x" / ".." / "m", "--b": tmp_path / "m"})
