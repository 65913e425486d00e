"""sam_teacher (SimIR's SAM-family teacher, our reconstruction): outputs, what trains, the run's input norm,
official SAM checkpoints (encoder AND decoder keys), and saved teachers reloading without the pretrained file."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm")

from irfoundry.errors import CheckpointError, ModelError  # noqa: E402
from irfoundry.foundation import FoundationSpec, create_foundation, list_foundations, register_foundation  # noqa: E402
from irfoundry.models import create_model  # noqa: E402
from irfoundry.models.checkpoint import load_weights, save_weights  # noqa: E402
from irfoundry.models.sam_decoder import SAMMaskHead  # noqa: E402

TINY = "sam_vit_teacher_test"
if TINY not in list_foundations():
    register_foundation(FoundationSpec(
        name=TINY, arch="samvit_base_patch16", family="sam", kind="vit",
        timm_kwargs=dict(depth=2, embed_dim=32, num_heads=2, global_attn_indexes=[1], img_size=64, neck_chans=32)))
SMALL_HEAD = dict(embed_dim=32, decoder_mlp_dim=64, decoder_heads=2)


def _teacher(**kw):
    torch.manual_seed(0)
    return create_model("sam_teacher", weights="random", **kw)


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_eval_gives_logits_of_the_input_size_and_self_prompting_adds_a_supervised_first_pass(size):
    plain, prompted = _teacher().eval(), _teacher(mask_prompt="self")
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        assert plain(x).shape == (2, 1, *size) and prompted.eval()(x).shape == (2, 1, *size)
    prompted.train()
    refined, first = prompted(x)
    assert refined.shape == first.shape == (2, 1, *size) and not torch.allclose(refined, first)
    assert isinstance(plain.train()(x), torch.Tensor)  # one pass: no deep supervision


def test_defaults_embed_the_stride_16_stage_and_finetune_its_last_two_blocks():
    t = _teacher()
    assert t.embed_stride == 16 and t.input_multiple == 32
    assert t.image_encoder.trainable_modules == ["blocks.3", "blocks.4"]
    with pytest.raises(ModelError, match="multiple of 32"):
        t(torch.randn(1, 1, 48, 64))


def test_frozen_encoder_gets_no_gradient_the_neck_and_decoder_do():
    t = _teacher(finetune="frozen").train()
    t(torch.randn(2, 1, 64, 64)).square().mean().backward()
    assert all(p.grad is None for p in t.image_encoder.parameters())
    assert all(p.grad is not None for p in t.neck.parameters())
    assert t.mask_head.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad is not None


def test_input_norm_is_undone_before_the_encoder():
    t = _teacher().eval()
    unit = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = t(unit)
        t.set_input_norm({"mean": 0.4, "std": 0.2})
        assert "input_mean" in t.state_dict()  # saved with the teacher
        torch.testing.assert_close(t((unit - 0.4) / 0.2), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelError, match="std"):
        t.set_input_norm({"mean": 0.0, "std": 0.0})


def _official_file(tmp_path):
    """An official-layout SAM file (image_encoder.* / prompt_encoder.* / mask_decoder.*) of the tiny family."""
    torch.manual_seed(3)
    enc = create_foundation(TINY, weights="random", layers=["neck"])
    head = SAMMaskHead(32, (4, 4), 16, num_heads=2, mlp_dim=64)
    state = {"image_encoder." + k.replace("mlp.fc", "mlp.lin"): v for k, v in enc.backbone.state_dict().items()}
    state.update(head.state_dict())
    path = tmp_path / "sam_vit_tiny_official.pth"
    torch.save(state, path)
    return path, enc, head


def test_official_sam_checkpoint_loads_encoder_and_decoder(tmp_path):
    path, enc, head = _official_file(tmp_path)
    t = create_model("sam_teacher", foundation=TINY, weights=str(path), finetune="lora:2", **SMALL_HEAD).eval()
    assert isinstance(t.neck, torch.nn.Identity)  # SAM's own neck is the embedding
    for k, v in head.state_dict().items():
        assert torch.equal(t.mask_head.state_dict()[k], v), k
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = torch.nn.functional.interpolate(head(enc(x)[0]), size=(64, 64), mode="bilinear")
        torch.testing.assert_close(t(x), expected, rtol=1e-5, atol=1e-5)  # LoRA starts as the base layers


def test_a_file_without_decoder_keys_is_refused_when_named_as_sam_checkpoint(tmp_path):
    path = tmp_path / "encoder_only.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="no prompt_encoder"):
        create_model("sam_teacher", foundation=TINY, weights="random", sam_checkpoint=str(path), **SMALL_HEAD)


def test_saved_teacher_reloads_exactly_without_reading_pretrained_weights(tmp_path):
    t = _teacher(mask_prompt="self")
    t.set_input_norm({"mean": 0.3, "std": 0.1})
    path = save_weights(t, tmp_path / "teacher.safetensors")
    again = load_weights(path, weights="random").eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), t.eval()(x))
