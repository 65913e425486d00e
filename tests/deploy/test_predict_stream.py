"""Prediction on folders, videos and stdin streams: JSON Lines records, skipped frames, exit codes, memory."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irfoundry.cli import main
from irfoundry.deploy.frames import expand_inputs, parse_frame_size
from irfoundry.deploy.tiling import TileSettings
from irfoundry.engine.inference import Predictor
from irfoundry.engine.predict import predict
from irfoundry.errors import ConfigError, DataError


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "targets.jsonl").read_text().splitlines()]


def _frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """``n x h x w`` uint8 frames: noise with one bright 3 x 3 target per frame."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((n, h, w)) * 60).astype(np.uint8)
    for i in range(n):
        y, x = 5 + (3 * i) % (h - 10), 5 + (7 * i) % (w - 10)
        frames[i, y : y + 3, x : x + 3] = 250
    return frames


def _folder(tmp_path: Path, n: int = 5) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(_frames(n)):
        Image.fromarray(f).save(folder / f"f{i}.png")
    return folder


def test_batched_prediction_equals_one_image_at_a_time(unet_weights, tmp_path):
    folder = _folder(tmp_path)
    Image.fromarray(_frames(1, 70, 90)[0]).save(folder / "other_size.png")  # a canvas of its own
    a, b = predict(unet_weights, [folder], tmp_path / "a", batch=1), predict(unet_weights, [folder], tmp_path / "b", batch=4)
    assert a["frames"] == b["frames"] == 6
    ra, rb = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [r["name"] for r in ra] == [r["name"] for r in rb]
    predictor, _ = Predictor.from_checkpoint(unet_weights)
    for r in ra:
        pa = np.asarray(Image.open(tmp_path / "a" / f"{r['name']}_prob.png"), dtype=np.int16)
        pb = np.asarray(Image.open(tmp_path / "b" / f"{r['name']}_prob.png"), dtype=np.int16)
        assert np.abs(pa - pb).max() <= 1  # 8-bit rounding of float-rounding differences only


def test_unreadable_image_is_reported_and_skipped_or_stops_with_strict(unet_weights, tmp_path, capsys):
    folder = _folder(tmp_path, 3)
    (folder / "f1.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "p"
    assert main(["predict", "--checkpoint", str(unet_weights), str(folder), "--out", str(out)]) == 3
    recs = _records(out)
    assert [r["frame"] for r in recs] == [0, 1, 2]
    assert "f1.png" in recs[1]["source"] and recs[1]["error"] and "targets" not in recs[1]
    assert (out / "f2_prob.png").is_file() and not (out / "f1_prob.png").exists()
    assert "skipped 1 unreadable frame" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(unet_weights), str(folder), "--out", str(tmp_path / "s"),
                 "--strict"]) == 1
    err = capsys.readouterr().err
    assert "f1.png" in err and "--strict" in err
    assert len(_records(tmp_path / "s")) == 1  # the frame before the bad one was written and kept


def test_video_file_frames_and_overlay_video(unet_weights, tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("av")
    frames = _frames(7, 48, 66)
    video = tmp_path / "clip.mp4"
    with iio.imopen(str(video), "w", plugin="pyav") as f:
        f.init_video_stream("libx264", fps=10)
        for fr in frames:
            f.write_frame(np.stack([fr] * 3, axis=-1))
    out = tmp_path / "p"
    r = predict(unet_weights, [video], out, overlay_video="overlay.mp4", batch=3)
    assert r["frames"] == 7 and r["skipped"] == []
    recs = _records(out)
    assert [x["position"] for x in recs] == list(range(7)) and recs[3]["name"] == "clip_000003"
    assert all(x["size"] == [48, 66] for x in recs)
    assert not list(out.glob("*.png"))  # video input: no per-frame PNGs unless asked
    back = list(iio.imiter(str(out / "overlay.mp4"), plugin="pyav"))
    assert len(back) == 7 and back[0].shape == (48, 66, 3)


def test_corrupt_video_is_reported_with_its_frame(unet_weights, tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    r = predict(unet_weights, [bad], tmp_path / "p")
    assert r["frames"] == 0 and len(r["skipped"]) == 1
    assert r["skipped"][0]["position"] == 0 and "broken.mp4" in r["skipped"][0]["error"]


def test_raw_stdin_stream_with_a_truncated_last_frame(unet_weights, tmp_path):
    frames = _frames(4, 40, 50)
    stream = io.BytesIO(frames.tobytes() + b"\x07" * 99)
    r = predict(unet_weights, ["-"], tmp_path / "p", frame_size=(40, 50), stdin=stream)
    assert r["frames"] == 4 and r["skipped"][0]["position"] == 4 and "99 of 2000 bytes" in r["skipped"][0]["error"]
    recs = _records(tmp_path / "p")
    assert [x.get("name") for x in recs[:4]] == [f"stdin_{i:06d}" for i in range(4)]
    # 16-bit frames read as value / 65535
    r16 = predict(unet_weights, ["-"], tmp_path / "q", frame_size=(40, 50), pixel_format="gray16le",
                  stdin=io.BytesIO((frames.astype("<u2") * 257).tobytes()))
    assert r16["frames"] == 4 and r16["skipped"] == []
    assert [x["targets"] for x in _records(tmp_path / "q")] == [x["targets"] for x in recs[:4]]
    with pytest.raises(ConfigError, match="--frame-size"):
        predict(unet_weights, ["-"], tmp_path / "z", stdin=io.BytesIO(b""))


def test_inputs_and_sizes_are_checked_before_anything_is_written(unet_weights, tmp_path):
    with pytest.raises(DataError, match="nowhere/.*neither an image, a video"):
        predict(unet_weights, [tmp_path / "nowhere" / "*.png"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert parse_frame_size("640x512") == (512, 640)
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_frame_size("640")
    with pytest.raises(ConfigError, match="once"):
        expand_inputs(["-", "-"])
    Image.fromarray(_frames(1)[0]).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="input multiple 32"):
        predict(unet_weights, [tmp_path / "a.png"], tmp_path / "tiles", tile=TileSettings(64, 64))
    assert not (tmp_path / "tiles").exists()


def test_predict_tiles_large_frames(unet_weights, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(_frames(1, 300, 400)[0]).save(folder / "big.png")
    Image.fromarray(_frames(1, 60, 60)[0]).save(folder / "small.png")
    r = predict(unet_weights, [folder], tmp_path / "t", tile=TileSettings(128, 32), save=["prob"])
    whole = predict(unet_weights, [folder], tmp_path / "w", save=["prob"])
    assert r["frames"] == whole["frames"] == 2
    small_t = np.asarray(Image.open(tmp_path / "t" / "small_prob.png"))
    assert np.array_equal(small_t, np.asarray(Image.open(tmp_path / "w" / "small_prob.png")))
    assert np.asarray(Image.open(tmp_path / "t" / "big_prob.png")).shape == (300, 400)


class _CountingStream(io.RawIOBase):
    """``n`` raw frames generated on the fly; records the resident memory after ``probe`` and ``n`` frames."""

    def __init__(self, n: int, shape: tuple[int, int], probe: int) -> None:
        self.n, self.shape, self.probe, self.sent, self.rss = n, shape, probe, 0, {}
        self.frame = _frames(1, *shape)[0].tobytes()

    def read(self, size: int = -1) -> bytes:
        if self.sent in (self.probe, self.n):
            self.rss[self.sent] = _rss_bytes()
        if self.sent >= self.n:
            return b""
        self.sent += 1
        return self.frame


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read resident memory")
def test_memory_stays_flat_over_ten_thousand_frames(unet_weights, tmp_path):
    stream = _CountingStream(10_000, (32, 32), probe=1_000)
    r = predict(unet_weights, ["-"], tmp_path / "p", frame_size=(32, 32), stdin=stream, batch=16)
    assert r["frames"] == 10_000 and r["skipped"] == []
    growth = stream.rss[10_000] - stream.rss[1_000]
    assert growth < 20 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB from frame 1,000 to 10,000"
    assert sum(1 for _ in open(tmp_path / "p" / "targets.jsonl")) == 10_000
