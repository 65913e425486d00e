"""``irfoundry data points``: LESPS centroid / coarse clicks from a dataset's masks, read back as labels."""

from __future__ import annotations

from irfoundry.cli import main
from irfoundry.data.dataset import DatasetSpec
from irfoundry.data.io import read_image_info, read_mask
from irfoundry.data.point_files import read_points
from irfoundry.data.points import centroid_points


def test_points_are_derived_per_image_and_the_coarse_seed_reproduces_them(tiny_synth, tmp_path, capsys):
    # a CSV cannot list the target-free images of the split: refused before anything is written
    assert main(["data", "points", f"{tiny_synth}:train", "--kind", "centroid", "--out", str(tmp_path / "c.csv")]) == 1
    assert "c.json instead" in capsys.readouterr().err and not (tmp_path / "c.csv").exists()
    assert main(["data", "points", f"{tiny_synth}:train", "--kind", "centroid", "--out", str(tmp_path / "c.json")]) == 0
    assert "centroid points of 14 images" in capsys.readouterr().out
    table = read_points(tmp_path / "c.json")
    samples = DatasetSpec.parse(f"{tiny_synth}:train").resolve()
    assert list(table) == [s.id for s in samples]
    for s in samples:
        mask = read_mask(s.mask, image_shape=read_image_info(s.image).size)
        assert table[s.id] == centroid_points(mask)
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.json"
        assert main(["data", "points", str(tiny_synth), "--split", "train", "--kind", "coarse", "--seed", str(seed),
                     "--out", str(out)]) == 0
        runs.append(read_points(out))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert all(len(runs[0][i]) == len(table[i]) for i in table)  # one click per target
    for s in samples:
        mask = read_mask(s.mask, image_shape=read_image_info(s.image).size)
        assert all(mask[y, x] for y, x in runs[0][s.id])  # coarse clicks land on a target
    # an image's clicks do not depend on the split it is derived with
    assert main(["data", "points", str(tiny_synth), "--kind", "coarse", "--seed", "1", "--out", str(tmp_path / "all.json")]) == 0
    everything = read_points(tmp_path / "all.json")
    assert len(everything) == 24 and all(everything[i] == runs[0][i] for i in runs[0])
