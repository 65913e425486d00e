"""The one inference path: the padding policy, padded batches cropped back, and a predictor that carries
its normalisation and input multiple (predict, eval and validation all use it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irfoundry.engine.inference import Predictor, crop, pad_collate, padded_canvas, probabilities
from irfoundry.errors import ConfigError
from irfoundry.models import create_model
from irfoundry.models.checkpoint import save_weights


def test_padding_policy_pads_bottom_right_to_the_next_multiple_only_when_needed():
    assert padded_canvas(220, 325, 32) == (224, 352, 0, 0)
    assert padded_canvas(256, 256, 32) == (256, 256, 0, 0)
    with pytest.raises(ConfigError, match="padding policy 'centre'"):
        padded_canvas(10, 10, 32, "centre")


def test_the_padding_is_basicirstd_and_lesps_padimg():
    # utils.PadImg of XinyiYing/BasicIRSTD and XinyiYing/LESPS, written out: a side is padded at its end to
    # (h // 32 + 1) * 32 only if it is not divisible by 32 (NUDT-SIRST's 256 x 256 images are not padded)
    def padimg(n: int) -> int:
        return (n // 32 + 1) * 32 if n % 32 else n

    for h in range(1, 600, 7):
        for w in (h, h + 1, 256, 325):
            assert padded_canvas(h, w, 32) == (padimg(h), padimg(w), 0, 0)


def test_pad_collate_pads_every_map_and_crop_undoes_it():
    items = [{"image": torch.randn(1, 20, 30), "mask": torch.ones(1, 20, 30), "id": "a"},
             {"image": torch.randn(1, 40, 10), "mask": torch.ones(1, 40, 10), "id": "b"}]
    batch = pad_collate(items, multiple=16)
    assert batch["image"].shape == (2, 1, 48, 32) and batch["size"] == [(20, 30), (40, 10)]
    for i, it in enumerate(items):
        assert torch.equal(crop(batch["image"][i], batch["box"][i]), it["image"])
        assert batch["mask"][i].sum() == it["mask"].sum()  # padding is zero


def test_predictor_normalises_pads_and_crops_like_the_reference_loop(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet_tiny", base=4).eval()
    norm = {"mean": 0.3, "std": 0.2}
    path = save_weights(model, tmp_path / "m.safetensors", extra={"norm": norm})
    predictor, meta = Predictor.from_checkpoint(path)
    assert predictor.multiple == 32 and meta["norm"] == norm
    image = np.random.default_rng(1).random((37, 50)).astype(np.float32)
    prob = predictor.predict(image)
    x = torch.from_numpy((image - np.float32(0.3)) / np.float32(0.2))[None, None]
    with torch.no_grad():
        ref = torch.sigmoid(model(F.pad(x, (0, 14, 0, 27))))[0, 0, :37, :50].numpy()
    assert prob.shape == (37, 50) and np.array_equal(prob, ref)
    batch = predictor.collate([{"image": predictor.normalise(image)}, {"image": predictor.normalise(image[:20])}])
    probs = probabilities(predictor.fn, batch["image"], batch["box"])
    # batched with another image: the same map up to the last bits (convolution kernels depend on batch size)
    np.testing.assert_allclose(probs[0].numpy(), ref, rtol=0, atol=1e-6)
    assert probs[1].shape == (20, 50)
