"""The one dataset reader (sdpm_cli.dataset) behind `sdpm train` and `sdpm evaluate --data`, and the
single definitions of the lesion connectivity and the mode tuple."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

import numpy as np
import pytest

from sdpm_cli.dataset import Case, image_case, read_dataset
from sdpm_cli.errors import InputRejected, UsageError

ROOT = Path(__file__).resolve().parents[1]


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


@pytest.fixture
def raw(tmp_path):
    """nnU-Net raw layout with both splits, a DICOM-folder image, and files that are not ours."""
    d = tmp_path / "Dataset001"
    for split, n in (("Tr", 2), ("Ts", 1)):
        for i in range(n):
            _touch(d / f"images{split}" / f"case_{i:04d}_0000.nii.gz")
            _touch(d / f"labels{split}" / f"case_{i:04d}.nii.gz")
    (d / "imagesTr" / "case_0009_0000").mkdir()  # a DICOM folder
    _touch(d / "labelsTr" / "case_0009.nii.gz")
    _touch(d / "imagesTr" / "case_0000_0001.nii.gz")  # a second channel: not CT, skipped
    _touch(d / "imagesTr" / "notes.txt")
    (d / "imagesTr" / ".hidden").mkdir()
    (d / "dataset.json").write_text("{}")
    return d


def test_folder_layout_both_splits(raw):
    tr = read_dataset(raw, "train")
    assert [c.case for c in tr] == ["case_0000", "case_0001", "case_0009"]
    assert tr[0] == Case("case_0000", raw / "imagesTr" / "case_0000_0000.nii.gz", raw / "labelsTr" / "case_0000.nii.gz")
    assert tr[2].image.is_dir()
    ts = read_dataset(raw, "test")
    assert [(c.case, c.label.parent.name) for c in ts] == [("case_0000", "labelsTs")]


def test_csv_layout_relative_paths_and_case_column(tmp_path):
    _touch(tmp_path / "img" / "a.nii.gz")
    _touch(tmp_path / "lab" / "a.nii.gz")
    _touch(tmp_path / "lab" / "b.nii.gz")
    (tmp_path / "img" / "b_dicom").mkdir()
    p = tmp_path / "pairs.csv"
    with open(p, "w", newline="") as fh:
        csv.writer(fh).writerows([[" Image", "LABEL ", "case"], ["img/a.nii.gz", "lab/a.nii.gz", ""],
                                  ["", "", ""], ["img/b_dicom", "lab/b.nii.gz", "bee"]])
    cases = read_dataset(p)
    assert cases == [Case("a", tmp_path / "img" / "a.nii.gz", tmp_path / "lab" / "a.nii.gz"),
                     Case("bee", tmp_path / "img" / "b_dicom", tmp_path / "lab" / "b.nii.gz")]


def test_train_and_evaluate_read_the_same_cases(raw):
    from sdpm_cli.evaluate.cases import dataset_cases
    from sdpm_cli.train.data import find_cases

    assert [(c.case, c.image, c.label) for c in find_cases(raw)] == \
        [(p.case, p.image, p.truth) for p in dataset_cases(raw, "train")]


@pytest.mark.parametrize("setup, split, what, pattern", [
    (lambda d: d / "nowhere", "test", "--data", r"^--data does not exist: "),
    (lambda d: d / "nowhere", "train", "training data", r"^training data does not exist: "),
    (lambda d: (d / "empty").mkdir() or d / "empty", "test", "--data",
     r"has no imagesTs/ and labelsTs/ folders \(nnU-Net raw layout\) and is not a CSV; try --split train$"),
    (lambda d: _touch(d / "ct.nii.gz"), "test", "--data", r"is neither an nnU-Net raw folder nor a \.csv"),
    (lambda d: (d / "p.csv").write_text("img,lab\na,b\n") and d / "p.csv", "test", "--data",
     r"a CSV needs a header with 'image' and 'label' columns"),
    (lambda d: (d / "p.csv").write_text("image,label\n") and d / "p.csv", "test", "--data", r"lists no cases$"),
    (lambda d: (d / "p.csv").write_text("image,label\nx.nii.gz,y.nii.gz\n") and d / "p.csv", "test", "--data",
     r"line 2: image not found: x\.nii\.gz$"),
])
def test_one_line_errors(tmp_path, setup, split, what, pattern):
    with pytest.raises(InputRejected) as exc:
        read_dataset(setup(tmp_path), split, what=what)
    assert re.search(pattern, str(exc.value)) and "\n" not in str(exc.value)


def test_dataset_faults_named(raw, tmp_path):
    with pytest.raises(UsageError, match="unknown split 'val'"):
        read_dataset(raw, "val")
    _touch(raw / "labelsTr" / "case_0001.nii")  # a second label file for one case
    with pytest.raises(InputRejected, match="labelsTr holds two files for case case_0001"):
        read_dataset(raw, "train")
    (raw / "labelsTs" / "case_0000.nii.gz").unlink()
    with pytest.raises(InputRejected, match=r"case case_0000: no label case_0000\.nii\.gz in .*labelsTs"):
        read_dataset(raw, "test")
    (tmp_path / "e" / "imagesTs").mkdir(parents=True)
    (tmp_path / "e" / "labelsTs").mkdir()
    with pytest.raises(InputRejected, match="no images"):
        read_dataset(tmp_path / "e")
    p = tmp_path / "dup.csv"
    _touch(tmp_path / "a.nii.gz")
    p.write_text("image,label\na.nii.gz,a.nii.gz\na.nii.gz,a.nii.gz\n")
    with pytest.raises(InputRejected, match="line 3: case a appears twice"):
        read_dataset(p)


def test_image_case_names(tmp_path):
    assert image_case(Path("case_0001_0000.nii.gz")) == "case_0001"
    assert image_case(Path("case_0001_0002.nii.gz")) is None
    assert image_case(Path("brain.nrrd")) == "brain"
    assert image_case(Path("readme.txt")) is None


def _literal_assignments(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) for e in node.elts):
            yield node, tuple(e.value for e in node.elts)


def test_one_connectivity_and_one_mode_tuple():
    """No module but sdpm_cli.labels builds the 26-connectivity kernel, and none but sdpm_cli.modes
    spells out the mode tuple."""
    from sdpm_cli.labels import CONNECTIVITY_26
    from sdpm_cli.modes import MODES, UNION_PARTS

    assert CONNECTIVITY_26.shape == (3, 3, 3) and CONNECTIVITY_26.all() and not CONNECTIVITY_26.flags.writeable
    assert UNION_PARTS == ("out", "salient", "infer") and MODES == (*UNION_PARTS, "union")
    kernels, modes = [], []
    for path in sorted((ROOT / "sdpm_cli").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if rel != "sdpm_cli/labels.py" and re.search(r"np\.ones\(\(3, 3, 3\)|generate_binary_structure\(3, 3\)", text):
            kernels.append(rel)
        if rel == "sdpm_cli/modes.py":
            continue
        for _, values in _literal_assignments(ast.parse(text)):
            if len(values) >= 3 and set(values) <= set(MODES):
                modes.append(rel)
    assert kernels == [] and modes == []
    np.testing.assert_array_equal(CONNECTIVITY_26, np.ones((3, 3, 3), bool))
