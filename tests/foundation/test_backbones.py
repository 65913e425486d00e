"""Every named foundation backbone: real architecture, declared feature_info against real outputs, the
input plumbing, the alignment rule, layer selection, cache keys and name errors.

Backbones up to ViT-B size are built with random weights on the CPU; the large ones (ViT-L/g/H, DINOv3
H+/7B, SAM-L/H) are built and run on the ``meta`` device (shapes only, no memory, well under a second
each), their real dimensions checked against the published configurations.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from irfoundry.errors import ModelError
from irfoundry.foundation import (
    FoundationSpec,
    align,
    create_foundation,
    foundation_spec,
    list_foundations,
    register_foundation,
    sample_cells,
    to_unit_range,
)

#: built for real on the CPU (random weights, one per family); everything else on the meta device
CPU_BUILT = {"dinov2_vits14", "dinov3_vits16", "efficientnet_lite0", "timm:vit_tiny_patch16_224"}

#: published configurations: (embed dim, depth, heads, patch, register tokens, params in millions as the
#: papers round them). DINOv2 paper (Oquab et al. 2024) tab. 19 / hub code; DINOv3 paper (Simeoni et al.
#: 2025) tab. 14 / hub code; SAM image encoders (Kirillov et al. 2023, build_sam.py).
PUBLISHED = {
    "dinov2_vits14": (384, 12, 6, 14, 0, 21), "dinov2_vitb14": (768, 12, 12, 14, 0, 86),
    "dinov2_vitl14": (1024, 24, 16, 14, 0, 300), "dinov2_vitg14": (1536, 40, 24, 14, 0, 1100),
    "dinov2_vits14_reg": (384, 12, 6, 14, 4, 21), "dinov2_vitb14_reg": (768, 12, 12, 14, 4, 86),
    "dinov2_vitl14_reg": (1024, 24, 16, 14, 4, 300), "dinov2_vitg14_reg": (1536, 40, 24, 14, 4, 1100),
    "dinov3_vits16": (384, 12, 6, 16, 4, 21), "dinov3_vits16plus": (384, 12, 6, 16, 4, 29),
    "dinov3_vitb16": (768, 12, 12, 16, 4, 86), "dinov3_vitl16": (1024, 24, 16, 16, 4, 300),
    "dinov3_vith16plus": (1280, 32, 20, 16, 4, 840), "dinov3_vit7b16": (4096, 40, 32, 16, 4, 6716),
    "sam_vit_b": (768, 12, 12, 16, 0, None), "sam_vit_l": (1024, 24, 16, 16, 0, None),
    "sam_vit_h": (1280, 32, 16, 16, 0, None),
}
SAM_GLOBAL_ATTN = {"sam_vit_b": [2, 5, 8, 11], "sam_vit_l": [5, 11, 17, 23], "sam_vit_h": [7, 15, 23, 31]}


_BUILT: dict = {}


def _build(name: str, **kw):
    """``(model, device)`` with seed-0 random weights (bundled ones for efficientnet_lite0), built once per
    session for each argument set (tests only read them)."""
    key = (name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items())))
    if key not in _BUILT:
        torch.manual_seed(0)
        device = "cpu" if name in CPU_BUILT else "meta"
        weights = None if name == "efficientnet_lite0" else "random"
        _BUILT[key] = create_foundation(name, weights=weights, device=device, **kw), device
    return _BUILT[key]


@pytest.mark.parametrize("name", list_foundations())
def test_every_named_backbone_builds_and_its_feature_info_matches_its_outputs(name):
    fm, device = _build(name)
    h, w = 45, 61  # not a multiple of any patch size or stride
    x = torch.rand(2, 1, h, w) if device == "cpu" else torch.empty(2, 1, h, w, device="meta")
    maps = fm(x)
    assert len(maps) == len(fm.feature_info) == len(fm.layers)
    for m, info in zip(maps, fm.feature_info):
        s = info["stride"]
        assert m.shape == (2, info["channels"], math.ceil(h / s), math.ceil(w / s)), (name, info)
        if device == "cpu":
            assert torch.isfinite(m).all()
    if name == "efficientnet_lite0":  # bundled weights by default
        assert fm.weights.startswith("bundled:") and len(fm.weights_sha256) == 64
    else:
        assert fm.weights == "random" and fm.weights_sha256 is None


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_named_vits_have_the_published_architecture(name):
    dim, depth, heads, patch, regs, params_m = PUBLISHED[name]
    bb = _build(name)[0].backbone
    assert bb.embed_dim == dim and len(bb.blocks) == depth
    assert bb.blocks[0].attn.num_heads == heads
    assert tuple(bb.patch_embed.proj.kernel_size) == (patch, patch)
    if name.startswith("dinov"):
        reg = getattr(bb, "reg_token", None)
        assert (0 if reg is None else reg.shape[1]) == regs
    if name in SAM_GLOBAL_ATTN:
        assert [i for i, b in enumerate(bb.blocks) if b.window_size == 0] == SAM_GLOBAL_ATTN[name]
        assert bb.num_features == 256  # the neck: SAM's image embedding
    if params_m is not None:  # the papers round to two significant digits
        n = sum(p.numel() for p in bb.parameters()) / 1e6
        assert abs(n - params_m) / params_m < 0.06, n


def test_dinov2_is_built_at_its_native_518_grid_so_official_weights_load_without_resampling():
    bb = _build("dinov2_vits14_reg")[0].backbone
    assert bb.pos_embed.shape == (1, 37 * 37, 384) and bb.patch_embed.grid_size == (37, 37)


def test_default_layers_are_four_evenly_spaced_blocks_and_every_cnn_stage():
    assert _build("dinov2_vits14")[0].layers == [2, 5, 8, 11]
    assert _build("dinov2_vitg14")[0].layers == [9, 19, 29, 39]
    assert _build("sam_vit_h")[0].layers == SAM_GLOBAL_ATTN["sam_vit_h"]
    fm = _build("efficientnet_lite0")[0]
    assert fm.layers == [0, 1, 2, 3, 4]
    assert [(i["channels"], i["stride"]) for i in fm.feature_info] == [(16, 2), (24, 4), (40, 8), (112, 16), (320, 32)]


def test_native_maps_are_the_backbone_grid_of_the_padded_normalised_image():
    fm, _ = _build("dinov2_vits14")
    x = torch.rand(1, 1, 30, 43)
    img = (x.expand(-1, 3, -1, -1) - fm.mean) / fm.std
    img = F.pad(img, (0, 56 - 43, 0, 42 - 30))  # zeros after normalisation, bottom/right, to multiples of 14
    with torch.no_grad():
        ref = fm.backbone.forward_intermediates(img, indices=[2, 5, 8, 11], intermediates_only=True)
    got = fm(x)
    assert [tuple(g.shape) for g in got] == [(1, 384, 3, 4)] * 4
    for g, r in zip(got, ref):
        assert torch.equal(g, r)


def test_cnn_maps_are_cropped_to_ceil_of_the_input_over_the_stride():
    fm = create_foundation("efficientnet_lite0", layers=[2, -1])
    x = torch.rand(1, 1, 33, 70)  # padded to 64 x 96 inside
    img = F.pad((x.expand(-1, 3, -1, -1) - fm.mean) / fm.std, (0, 26, 0, 31))
    with torch.no_grad():
        ref = fm.backbone.forward_intermediates(img, indices=[2, 4], intermediates_only=True)
    got = fm(x)
    assert [tuple(r.shape[-2:]) for r in ref] == [(8, 12), (2, 3)]
    assert [tuple(g.shape[-2:]) for g in got] == [(5, 9), (2, 3)]
    assert torch.equal(got[0], ref[0][..., :5, :9]) and torch.equal(got[1], ref[1])


def test_grey_input_equals_the_same_image_given_as_rgb():
    fm, _ = _build("dinov3_vits16")
    x = torch.rand(1, 1, 32, 48)
    for grey, rgb in zip(fm(x), fm(x.expand(-1, 3, -1, -1).contiguous())):
        assert torch.equal(grey, rgb)


def test_input_size_resizes_for_the_backbone_but_keeps_the_output_contract():
    vit = "timm:vit_tiny_patch16_224"
    fm, _ = _build(vit, layers=[11], input_size=80)
    x = torch.rand(2, 1, 40, 52)
    (m,) = fm(x)
    assert m.shape == (2, 192, math.ceil(40 / 16), math.ceil(52 / 16))
    # an image already of size input_size needs no resampling: exactly the native grid
    same, _ = _build(vit, layers=[11], input_size=(48, 32))
    native, _ = _build(vit, layers=[11])
    y = torch.rand(1, 1, 48, 32)
    assert torch.equal(same(y)[0], native(y)[0])
    assert not torch.equal(fm(y)[0], native(y)[0])


def test_output_stride_samples_every_map_to_one_grid():
    fm = create_foundation("efficientnet_lite0", output_stride=8)
    x = torch.rand(1, 1, 50, 37)
    maps = fm(x)
    assert all(i["stride"] == 8 for i in fm.feature_info)
    assert {tuple(m.shape[-2:]) for m in maps} == {(7, 5)}
    assert torch.equal(maps[2], create_foundation("efficientnet_lite0", layers=[2])(x)[0])  # native stride 8


def test_sample_cells_places_every_output_cell_at_its_centre():
    # a map whose value is its cell centre in input pixels is linear: bilinear sampling must return the
    # output cell centres exactly (away from the clamped border)
    s, out_s = 14.0, 32.0
    h, w = 10, 7
    cy = (torch.arange(h) + 0.5) * s
    cx = (torch.arange(w) + 0.5) * s
    feat = torch.stack([cy[:, None].expand(h, w), cx[None, :].expand(h, w)])[None].double()
    size = (4, 3)
    got = align(feat, s, out_s, size)
    want_y = (torch.arange(size[0]) + 0.5) * out_s
    want_x = (torch.arange(size[1]) + 0.5) * out_s
    assert torch.allclose(got[0, 0], want_y[:, None].expand(size).double(), atol=1e-9)
    assert torch.allclose(got[0, 1], want_x[None, :].expand(size).double(), atol=1e-9)
    # identical grids: an exact crop, no interpolation
    rnd = torch.randn(1, 3, 5, 6)
    assert torch.equal(sample_cells(rnd, (16.0, 16.0), (16.0, 16.0), (4, 6)), rnd[..., :4, :])


def test_align_differs_from_a_plain_stretch_when_vit_cells_overhang_the_image():
    feat = torch.randn(1, 2, 19, 19)  # ceil(256 / 14) ViT cells covering 266 pixels
    aligned = align(feat, 14, 32, (8, 8))
    stretched = F.interpolate(feat, size=(8, 8), mode="bilinear", align_corners=False)
    assert aligned.shape == stretched.shape and not torch.allclose(aligned, stretched)


def test_to_unit_range_undoes_the_host_normalisation():
    img = torch.rand(2, 1, 8, 8)
    mean, std = 0.31, 0.17
    assert torch.allclose(to_unit_range((img - mean) / std, mean, std), img, atol=1e-6)
    assert to_unit_range(torch.full((1, 1, 2, 2), 100.0), mean, std).max() == 1.0


def test_normalised_or_integer_inputs_are_refused_with_the_fix():
    fm = create_foundation("efficientnet_lite0")
    with pytest.raises(ModelError, match="to_unit_range"):
        fm((torch.rand(1, 1, 32, 32) - 0.3) / 0.05)
    with pytest.raises(ModelError, match="divide 8-bit images by 255"):
        fm(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ModelError, match="N x 1 x H x W"):
        fm(torch.rand(1, 2, 32, 32))


def test_sam_neck_layer_gives_the_256_channel_image_embedding():
    torch.manual_seed(0)
    fm = create_foundation("sam_vit_b", weights="random", layers=[11, "neck"])
    maps = fm(torch.rand(1, 1, 48, 40))
    assert [i["channels"] for i in fm.feature_info] == [768, 256] and fm.feature_info[1]["layer"] == "neck"
    assert [tuple(m.shape) for m in maps] == [(1, 768, 3, 3), (1, 256, 3, 3)]
    assert torch.equal(maps[1], fm.backbone.neck(maps[0]))


def test_norm_applies_the_final_vit_norm_and_is_refused_where_there_is_none():
    plain, _ = _build("dinov2_vits14")
    normed, _ = _build("dinov2_vits14", norm=True)
    x = torch.rand(1, 1, 28, 28)
    for p, n in zip(plain(x), normed(x)):
        assert torch.allclose(n, normed.backbone.norm(p.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-5)
    with pytest.raises(ModelError, match="neck"):
        create_foundation("sam_vit_b", weights="random", device="meta", norm=True)
    with pytest.raises(ModelError, match="final norm"):
        create_foundation("efficientnet_lite0", norm=True)


@pytest.mark.parametrize("layers, match", [
    ([12], "12 blocks"), ([-13], "12 blocks"), (["neck"], "block indices"), ([1.5], "block indices"), ([], "nothing"),
])
def test_bad_layers_are_refused(layers, match):
    with pytest.raises(ModelError, match=match):
        create_foundation("dinov2_vits14", weights="random", device="meta", layers=layers)


def test_bad_sizes_are_refused():
    for bad in (0, (3,), "big", (2.5, 3)):
        with pytest.raises(ModelError, match="input_size"):
            create_foundation("dinov2_vits14", weights="random", device="meta", input_size=bad)
    with pytest.raises(ModelError, match="output_stride"):
        create_foundation("dinov2_vits14", weights="random", device="meta", output_stride=0)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ModelError, match="unknown foundation backbone 'dinov2_vits16'.*dinov2_vits14"):
        create_foundation("dinov2_vits16")
    with pytest.raises(ModelError, match="timm has no model 'resnet181'.*timm:resnet18"):
        create_foundation("timm:resnet181")
    with pytest.raises(ModelError, match="Invalid pretrained tag"):
        foundation_spec("timm:resnet18.no_such_tag")


def test_any_timm_model_works_as_timm_name():
    torch.manual_seed(0)
    cnn = create_foundation("timm:resnet18", weights="random", layers=[1, 4])
    assert cnn.kind == "cnn" and [(i["channels"], i["stride"]) for i in cnn.feature_info] == [(64, 4), (512, 32)]
    assert [tuple(m.shape[-2:]) for m in cnn(torch.rand(1, 1, 50, 41))] == [(13, 11), (2, 2)]
    vit, _ = _build("timm:vit_tiny_patch16_224", layers=[11])
    assert vit.kind == "vit" and vit(torch.rand(1, 1, 40, 40))[0].shape == (1, 192, 3, 3)  # dynamic_img_size
    tagged = foundation_spec("timm:vit_large_patch16_dinov3_qkvb.sat493m")
    fm = create_foundation(tagged, weights="random", device="meta")
    assert fm.arch == "vit_large_patch16_dinov3_qkvb.sat493m"
    assert fm.input_mean == (0.430, 0.411, 0.296) and fm.input_std == (0.213, 0.156, 0.143)  # the tag's


def test_registering_a_name_twice_raises():
    with pytest.raises(ModelError, match="already registered"):
        register_foundation(FoundationSpec(name="sam_vit_b", arch="samvit_base_patch16", family="sam", kind="vit"))


def test_cache_key_changes_with_what_changes_the_features():
    def tiny(seed=0, name="timm:vit_tiny_patch16_224", **kw):
        torch.manual_seed(seed)
        return create_foundation(name, weights="random", **kw).cache_key()

    base = tiny()
    assert base == tiny() and base.startswith("timm_vit_tiny_patch16_224-")  # same seed: same random weights
    variants = [tiny(layers=[11]), tiny(input_size=224), tiny(output_stride=16), tiny(norm=True), tiny(seed=1),
                tiny(name="timm:vit_tiny_patch16_384")]
    assert len({base, *variants}) == 7
    lite = _build("efficientnet_lite0")[0]
    assert lite.config()["weights_sha256"] == lite.weights_sha256 and len(lite.weights_sha256) == 64
    assert lite.cache_key() == create_foundation("efficientnet_lite0").cache_key()


def test_missing_foundation_extra_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # as on a base install: import timm raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'irfoundry\[foundation\]'"):
        create_foundation("efficientnet_lite0")
