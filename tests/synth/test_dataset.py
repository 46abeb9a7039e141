"""write_dataset / `sdpm synth`: nnU-Net layout, manifest truth, subset reproducibility, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from sdpm_cli.errors import UsageError
from sdpm_cli.synth import write_dataset
from sdpm_cli.synth.dataset import is_test_case
from tests.synth.conftest import small_cfg


@pytest.fixture(scope="module")
def ds3(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "set"
    man = write_dataset(out, 3, seed=5, fmt="both", test_fraction=0.34, progress=False, cfg=small_cfg())
    return out, man


def test_layout_and_dataset_json(ds3):
    out, man = ds3
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "infarct": 1, "hemorrhage": 2}
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    splits = [c["split"] for c in man["cases"]]
    assert splits == ["train", "train", "test"] and dj["numTraining"] == 2
    for c in man["cases"]:
        sub = "Ts" if c["split"] == "test" else "Tr"
        assert (out / f"images{sub}" / f"{c['id']}_0000.nii.gz").is_file()
        assert (out / f"labels{sub}" / f"{c['id']}.nii.gz").is_file()
        assert len(list((out / c["dicom"]).glob("*.dcm"))) == c["protocol"]["n_slices"]
    assert (out / "manifest.csv").read_text().count("\n") == 4
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_manifest_volumes_equal_label_files(ds3):
    out, man = ds3
    for c in man["cases"]:
        lab = sitk.ReadImage(str(out / c["label"]))
        img = sitk.ReadImage(str(out / c["image"]))
        assert lab.GetSize() == img.GetSize()
        assert np.allclose(lab.GetOrigin(), img.GetOrigin()) and np.allclose(lab.GetSpacing(), img.GetSpacing())
        a = sitk.GetArrayFromImage(lab)
        vox = float(np.prod(lab.GetSpacing())) / 1000.0
        for cls, name in ((1, "infarct"), (2, "hemorrhage")):
            assert c["volume_ml"][name] == pytest.approx((a == cls).sum() * vox, abs=1e-3)


def test_a_case_depends_only_on_seed_and_index(ds3, tmp_path):
    out, man = ds3
    write_dataset(tmp_path / "two", 2, seed=5, fmt="nifti", test_fraction=0.34, progress=False, cfg=small_cfg())
    for name in ("imagesTr/synth_0001_0000.nii.gz", "labelsTr/synth_0001.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / name)))
        assert np.array_equal(a, b)


def test_refuses_to_overwrite_without_force(ds3, tmp_path):
    out, _ = ds3
    with pytest.raises(UsageError, match="not empty"):
        write_dataset(out, 1, seed=1, progress=False, cfg=small_cfg())
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not an sdpm synth data set"):
        write_dataset(other, 1, seed=1, progress=False, cfg=small_cfg(), force=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_test_split_is_spread_evenly():
    for n in (1, 5, 10, 37):
        assert sum(is_test_case(i, 0.2) for i in range(n)) == int(n * 0.2)


@pytest.mark.slow
def test_cli_writes_dicom_and_refuses_bad_options(run_cli, tmp_path):
    out = tmp_path / "cli"
    code, stdout, _ = run_cli("synth", out, "--cases", "1", "--seed", "3", "--lesion", "none", "--format", "dicom",
                              "--matrix", "128", "--thickness", "5", "-q")
    assert code == 0, stdout
    man = json.loads((out / "manifest.json").read_text())
    assert man["cases"][0]["lesions"] == [] and (out / "dicom" / "synth_0000").is_dir()
    assert not (out / "imagesTr").exists() and (out / "labelsTr" / "synth_0000.nii.gz").is_file()
    code, _, err = run_cli("synth", out, "--cases", "1", "-q")
    assert code == 2 and "not empty" in err and "Traceback" not in err
    code, _, err = run_cli("synth", tmp_path / "x", "--lesion", "tumour", "-q")
    assert code == 2 and "unknown lesion" in err
    code, _, err = run_cli("synth", tmp_path / "y", "--cases", "0", "-q")
    assert code == 2 and "at least 1" in err
    code, _, err = run_cli("synth", tmp_path / "z", "--shapeless-infarcts", "1.5", "-q")
    assert code == 2 and "must lie in [0, 1]" in err
    code, _, err = run_cli("synth", tmp_path / "w", "--family", "atlas", "--shapeless-infarcts", "0.5", "-q")
    assert code == 2 and "belongs to family A" in err and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_parallel_workers_give_the_same_files(ds3, tmp_path):
    out, _ = ds3
    write_dataset(tmp_path / "par", 2, seed=5, fmt="nifti", test_fraction=0.34, progress=False, cfg=small_cfg(),
                  workers=2)
    for name in ("imagesTr/synth_0000_0000.nii.gz", "labelsTr/synth_0001.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "par" / name)))
        assert np.array_equal(a, b)


def test_force_replaces_an_earlier_synth_data_set(tmp_path):
    out = tmp_path / "again"
    write_dataset(out, 1, seed=1, progress=False, cfg=small_cfg(matrix=64), test_fraction=0.0)
    (out / "stale.txt").write_text("from the first run")
    man = write_dataset(out, 1, seed=2, progress=False, cfg=small_cfg(matrix=64), test_fraction=0.0, force=True)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 2 == man["seed"]
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging or trash left
