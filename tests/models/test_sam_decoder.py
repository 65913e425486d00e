"""SAM's prompt encoder + mask decoder: equal to segment-anything's on golden outputs, official keys load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irfoundry.errors import CheckpointError
from irfoundry.models.sam_decoder import SAMMaskHead, sam_head_state

GOLDEN = Path(__file__).parent / "golden" / "sam_head_small.npz"


def _small_head() -> SAMMaskHead:
    """The width of the golden file, weights filled by key exactly as its generator filled the reference's
    (segment_anything 1.0 from PyPI, run outside the repo: ``torch.randn(shape, Generator(1234)) * 0.2`` in
    sorted key order)."""
    head = SAMMaskHead(embed_dim=32, embedding_size=(8, 8), stride=16, depth=2, num_heads=2, mlp_dim=64,
                       mask_in_chans=8, iou_head_hidden_dim=32)
    state = head.state_dict()
    g = torch.Generator().manual_seed(1234)
    head.load_state_dict({k: torch.randn(state[k].shape, generator=g) * 0.2 for k in sorted(state)}, strict=True)
    return head.eval()


def _inputs():
    g = torch.Generator().manual_seed(99)
    emb = torch.randn(2, 32, 8, 8, generator=g)
    mask = torch.randn(2, 1, 32, 32, generator=g)
    pts = torch.rand(2, 3, 2, generator=g) * 128
    return emb, mask, pts, torch.tensor([[1, 0, 1], [1, 1, -1]]), torch.tensor([[10.0, 20.0, 60.0, 90.0],
                                                                                   [0.0, 5.0, 127.0, 100.0]])


def test_outputs_equal_segment_anythings_for_mask_point_and_box_prompts():
    gold = np.load(GOLDEN)
    head = _small_head()
    pe, md = head.prompt_encoder, head.mask_decoder
    emb, mask, pts, lab, box = _inputs()
    with torch.no_grad():
        sparse, dense = pe(masks=mask)  # both images at once: the batch aligns with the prompts
        masks, iou = md.predict_masks(emb, pe.get_dense_pe(), sparse, dense)
        for i in range(2):
            np.testing.assert_allclose(masks[i : i + 1].numpy(), gold[f"mask_prompt_masks_{i}"], atol=2e-5, rtol=1e-4)
            np.testing.assert_allclose(iou[i : i + 1].numpy(), gold[f"mask_prompt_iou_{i}"], atol=2e-5, rtol=1e-4)
            s, d = pe(points=(pts[i : i + 1], lab[i : i + 1]), boxes=box[i : i + 1])
            np.testing.assert_allclose(s.numpy(), gold[f"prompts_sparse_{i}"], atol=1e-6, rtol=1e-5)
            m, q = md.predict_masks(emb[i : i + 1], pe.get_dense_pe(), s, d)
            np.testing.assert_allclose(m.numpy(), gold[f"prompts_masks_{i}"], atol=2e-5, rtol=1e-4)
            np.testing.assert_allclose(q.numpy(), gold[f"prompts_iou_{i}"], atol=2e-5, rtol=1e-4)
        single = head(emb, mask)
    assert single.shape == (2, 1, 32, 32) and torch.allclose(single, masks[:, :1], atol=1e-6)


def test_the_official_checkpoints_decoder_keys_load_strictly_and_sam_sizes_hold():
    head = SAMMaskHead()  # SAM ViT-B / L / H: one decoder
    n = sum(p.numel() for p in head.parameters())
    assert sum(p.numel() for p in head.mask_decoder.parameters()) == 4_058_340  # segment-anything's mask decoder
    official = {"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(1)}  # the encoder half is not the head's
    official.update({k: v.clone() + 1 for k, v in head.state_dict().items()})
    fresh = SAMMaskHead()
    fresh.load_state_dict(sam_head_state(official), strict=True)
    assert all(torch.equal(v, official[k]) for k, v in fresh.state_dict().items())
    with pytest.raises(CheckpointError, match="official SAM"):
        sam_head_state({"image_encoder.x": torch.zeros(1)})
    x = torch.randn(1, 256, 16, 20)  # any grid: the positional encoding follows it
    assert head(x).shape == (1, 1, 64, 80) and head(x, torch.zeros(1, 1, 64, 80)).shape == (1, 1, 64, 80)
    assert n == 4_058_340 + 6_220  # plus segment-anything's prompt encoder
    reference = json.loads((GOLDEN.parent / "sam_head_reference_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in head.state_dict().items()} == reference  # the official names and shapes
