"""irfoundry.data.layouts: layout detection, split parsing, DatasetSpec, errors; real split sizes."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_data import make_dataset, tiny_sample, write_png, write_split
from irfoundry.data.layouts import DatasetSpec, detect_layout, read_split_file
from irfoundry.errors import DataError


@pytest.mark.parametrize(
    "layout, split, expected",
    [
        ("sirst_v1", "train", ["Misc_1", "Misc_2"]),
        ("sirst_v1", "test", ["Misc_4", "Misc_5", "Misc_6"]),
        ("sirst_v1", "idx_320/test", ["Misc_5", "Misc_6"]),
        ("dnanet", "train", ["000001", "000002", "000003"]),
        ("dnanet", "70_30/test", ["000005", "000006"]),
        ("basicirstd", "test", ["000004", "000005", "000006"]),
        ("basicirstd", "train_TINY", ["000001", "000002", "000003"]),
        ("sirst_v2", "test_full", ["Misc_4", "Misc_5", "Misc_6"]),
    ],
)
def test_layouts_detected_and_resolved(tmp_path, layout, split, expected):
    root = make_dataset(tmp_path / layout, layout)
    assert detect_layout(root).name == layout
    samples = DatasetSpec.parse(f"{root}:{split}").resolve()
    assert [s.id for s in samples] == expected
    for s in samples:
        assert s.image.is_file() and s.mask.is_file()
        assert s.image.stem == s.id and s.mask.stem in (s.id, s.id + "_pixels0")


def test_plain_folder_with_split_file_by_path_crlf_no_trailing_newline(tmp_path):
    root = make_dataset(tmp_path / "plain", "folder")
    assert detect_layout(root).name == "folder"
    split = write_split(tmp_path / "lists" / "train.txt", ["000002", "000005"], crlf=True, trailing_newline=False)
    assert split.read_bytes().endswith(b"000005")
    samples = DatasetSpec.parse(f"{root}:{split}").resolve()
    assert [s.id for s in samples] == ["000002", "000005"]
    # no split: every image, natural order
    assert [s.id for s in DatasetSpec.parse(str(root)).resolve()] == [f"{i:06d}" for i in range(1, 7)]
    # relative split path is looked up in the dataset folder
    write_split(root / "mine.txt", ["000001"])
    assert [s.id for s in DatasetSpec(root, "mine.txt").resolve()] == ["000001"]


def test_read_split_file_tolerates_formats(tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes(b"\xef\xbb\xbfa\r\n\r\n  b  \n# comment\nc.png # trailing comment")
    assert read_split_file(p) == ["a", "b", "c"]


def test_spec_parse_and_str(tmp_path):
    root = make_dataset(tmp_path / "d", "dnanet")
    assert DatasetSpec.parse(str(root)) == DatasetSpec(root, None)
    assert DatasetSpec.parse(f"{root}:test") == DatasetSpec(root, "test")
    spec = DatasetSpec.parse(f"{root}:/abs/list.txt")
    assert spec.split == "/abs/list.txt" and spec.is_split_file
    assert str(DatasetSpec(root, "test")) == f"{root}:test"
    assert DatasetSpec.parse(DatasetSpec(root, "x")) == DatasetSpec(root, "x")
    # a ':' inside an existing folder name
    odd = make_dataset(tmp_path / "a:b", "dnanet")
    assert DatasetSpec.parse(f"{odd}:test") == DatasetSpec(odd, "test")
    assert DatasetSpec.parse(str(odd)) == DatasetSpec(odd, None)


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "pics").mkdir()
    with pytest.raises(DataError, match=r"no known dataset layout.*images/ \+ masks/.*idx_.*img_idx.*splits/"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        detect_layout(tmp_path / "missing")


def test_unknown_split_lists_available(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet")
    with pytest.raises(DataError, match=r"unknown split 'val'.*available splits: .*train.*test"):
        DatasetSpec(root, "val").resolve()
    with pytest.raises(DataError, match="nothere.txt"):
        DatasetSpec(root, str(tmp_path / "nothere.txt")).resolve()


def test_empty_split(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet")
    write_split(root / "50_50" / "test.txt", [])
    with pytest.raises(DataError, match=r"test.txt lists no samples"):
        DatasetSpec(root, "test").resolve()


def test_id_without_image_or_mask_names_id_and_file(tmp_path):
    root = make_dataset(tmp_path / "s", "sirst_v1")
    write_split(root / "idx_427" / "test.txt", ["Misc_4", "Misc_99"])
    with pytest.raises(DataError, match=r"'Misc_99'.*test.txt.*no image file"):
        DatasetSpec(root, "test").resolve()
    (root / "masks" / "Misc_4_pixels0.png").unlink()
    write_split(root / "idx_427" / "test.txt", ["Misc_4"])
    with pytest.raises(DataError, match=r"'Misc_4'.*no mask file"):
        DatasetSpec(root, "test").resolve()
    assert DatasetSpec(root, "test").resolve(require_masks=False)[0].mask is None


def test_duplicate_ids_refused(tmp_path):
    root = make_dataset(tmp_path / "s", "dnanet")
    write_split(root / "50_50" / "test.txt", ["000004", "000005", "000004"])
    with pytest.raises(DataError, match="more than once: 000004"):
        DatasetSpec(root, "test").resolve()


def test_other_image_extensions(tmp_path):
    root = tmp_path / "bmp"
    img, mask = tiny_sample(1)
    from PIL import Image

    (root / "images").mkdir(parents=True)
    Image.fromarray(img).save(root / "images" / "a.bmp")
    write_png(root / "masks" / "a.png", mask)
    (root / "images" / "notes.xml").write_text("<x/>")
    samples = DatasetSpec(root).resolve()
    assert [(s.id, s.image.suffix) for s in samples] == [("a", ".bmp")]
    assert np.asarray(Image.open(samples[0].mask)).max() == 255


# ---- real data ----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_sirst_idx427_and_idx320(real_data):
    root = real_data / "sirst"
    assert detect_layout(root).name == "sirst_v1"
    sizes = {s: len(DatasetSpec(root, s).resolve()) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 256, "val": 85, "test": 86, "trainval": 341}
    sizes320 = {s: len(DatasetSpec(root, f"idx_320/{s}").resolve()) for s in ("train", "val", "test")}
    assert sizes320 == {"train": 160, "val": 64, "test": 96}
    assert sum(len(DatasetSpec(root, f"idx_427/{s}").ids()) for s in ("train", "val", "test")) == 427
    assert DatasetSpec(root, "test").resolve()[0].mask.name.endswith("_pixels0.png")


@pytest.mark.realdata
def test_real_basicirstd_nuaa_split_files(real_data):
    lists = real_data / "splits" / "basicirstd" / "NUAA-SIRST"
    assert lists.joinpath("train.txt").read_bytes().count(b"\r\n") > 0
    train = DatasetSpec.parse(f"{real_data / 'sirst'}:{lists / 'train.txt'}").resolve()
    test = DatasetSpec.parse(f"{real_data / 'sirst'}:{lists / 'test.txt'}").resolve()
    assert (len(train), len(test)) == (213, 214)
    assert not {s.id for s in train} & {s.id for s in test}
    assert all(not s.id.endswith("\r") for s in train)


@pytest.mark.realdata
def test_real_nudt_50_50(real_data):
    root = real_data / "nudt_sirst"
    assert detect_layout(root).name == "dnanet"
    train, test = DatasetSpec(root, "train").resolve(), DatasetSpec(root, "50_50/test").resolve()
    assert (len(train), len(test)) == (663, 664)
    basic = real_data / "splits" / "basicirstd" / "NUDT-SIRST"
    assert len(DatasetSpec(root, str(basic / "test.txt")).resolve()) == 664
