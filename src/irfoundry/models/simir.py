"""SimIR's student: RepViT with dense and sparse queries, a query-augmented FPN and a SAM-style decoder.

Zhang, Zhang, Zhang, Li, Gao, Zhang, "Unleashing the Power of Generic Segmentation Models: A Simple Baseline
for Infrared Small Target Detection", ACM MM 2024 (arXiv 2409.04714). Reference code: O937-blip/SimIR
(partial, "untested"): ``semantic_sam/backbone/repvit11_query_deform.py`` (encoder),
``body/encoder/transformer_encoder_fpn_test.py`` (neck), ``body/encoder/sam_prompt_encoder.py`` +
``body/decoder/istdecoder_m.py`` + ``transformerforsam_m.py`` (decoder), ``body/istd_head.py`` and
``architectures/arch_sirst.py`` (wiring, loss), ``configs/repvit.yaml`` (sizes). Re-written here; nothing copied.

**Encoder** (:class:`SimIREncoder`). timm's RepViT (``repvit_m1_1``: widths 64/128/256/512, depths
2/2/12/2) with its two stride-2 stem convolutions set to stride 1, so the four stages sit at strides
1/2/4/8. The released RepViT is the same network block for block (the same RepVGG-DW blocks, SE on
alternate blocks, downsampling by a depthwise stride-2 conv + 1x1 conv + residual FFN) but flat: timm puts
the block before each downsampling into the next stage (``downsample.pre_block``). The released taps and
query points are reproduced exactly: stage ``i``'s output is taken *after* that pre-block, and the queries
act right after each downsampling (after the stem for the first stage). At each of those four points:

* *sparse queries*: 4 learnable tokens (one shared :class:`~irfoundry.layers.sparse_query.QueryExchange`,
  dropout 0) exchange with the features projected to ``dim`` (1x1 conv-BN-GELU); the map it returns is
  projected back (conv-BN-GELU) and added;
* *dense queries*: an 8-channel projection (conv-BN-GELU) of the stem output (full resolution) and of the
  current stage go through one :class:`~irfoundry.layers.deform_attn.MSDeformEncoderLayer` (2 levels, 8 heads,
  4 points, FFN 2048, sine positions); the stage's half is projected back (8 -> C) and added.
  As released, only the first layer's full-resolution output is carried on: the second and third layers
  both read it, and the third layer's full-resolution output feeds the encoder mask.

Each stage output (the tap) is projected to ``dim`` (1x1 conv-BN-GELU). Encoder mask:
``<MLP(LayerNorm(last token)), Conv3x3(dense_full)>`` (32 channels).

**Neck**: :class:`~irfoundry.layers.query_fpn.QueryFPN` (FPN tokens + encoder tokens at every level, dropout
0.5); its mask is the FPN mask. **Decoder** (:class:`SimIRMaskDecoder`), SAM's modules
(:mod:`irfoundry.layers.two_way_transformer`, :class:`~irfoundry.models.sam_decoder.PositionEmbeddingRandom`)
composed as the released code does, which departs from SAM in four places: the mask-prompt encoder works
at stride 1 (1x1 conv, LayerNorm2d, GELU, 3x3 conv, LayerNorm2d, GELU, 1x1 conv, instead of two 2x2 stride-2
convs), so the dense prompt is the FPN mask at full resolution; there is no upsampling (the x4 transposed
convolutions become a 1x1 and a 3x3 conv: the image embedding is already at stride 1); the tokens are one
mask token plus the neck's 8 tokens as sparse prompts, with learned position embeddings (no IoU token, no
point / box prompts); one hypernetwork MLP. Image embedding: the neck's ``mask_features`` + dense prompt.

**Outputs** (``B x 1 x H x W`` logits, full resolution): eval mode the decoder mask (what the released
evaluator reads); training mode ``[decoder, encoder, fpn]``.

Departures from the released code (at 256 x 256 the architecture and its initialisation are the released ones,
but for the six ``*_logit`` parameters, the identity at start):

* [ours] any input whose sides are multiples of :attr:`SimIRStudent.input_multiple` = 8 (the three stride-2
  stages); the released code hard-codes 256 x 256 (a ``view(b, 8, 256, 256)``);
* ``in_chans`` input channels: timm builds the stem's first convolution for them (random weights, so
  nothing is adapted; the reference feeds 3-channel ImageNet-normalised images);
* parameters the reference builds and never reads are not built: the 3 unused rows of the encoder's level
  embedding (it adds row 0 at every level), the prompt encoder's point / box / no-mask embeddings and its
  positional matrix, the decoder's unused ``mask_tokens``; the neck does not return the unused
  ``multi_scale_features``;
* [ours] each mask ends in a 1x1 ``Conv2d(1, 1)`` (``*_logit``, weight 1 and bias 0 at start: the released
  function), 2 parameters each, so :func:`~irfoundry.models.base.init_output_probability` applies;
* the deformable attention is :mod:`irfoundry.layers.deform_attn` (pure PyTorch, grid_sample), not the CUDA
  op; the sine positions are computed in float32 (released: in the map's dtype, which differs under AMP);
* parameter names are ours (timm's inside ``encoder.stem`` / ``encoder.stages``): the released fine-tuned
  weights and "distilled backbone" (Google Drive) were not reachable, so no ``checkpoint_filter`` maps them.

Borrowed from the released code's dependencies, not from its files: the sine encoding (Semantic-SAM's
``PositionEmbeddingSine``) and the RepViT blocks (timm, equal to the released ``RepViTBlock`` list).

Not reconstructed here: distillation (the released code has none; ``method: simir_distill``) and the loss
(``loss: simir_point``, :mod:`irfoundry.point_loss`).
"""

from __future__ import annotations

import importlib
from typing import Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.conv_bn_act import ConvBNAct
from irfoundry.layers.deform_attn import MSDeformEncoderLayer
from irfoundry.layers.mlp import MLP
from irfoundry.layers.query_fpn import QueryFPN
from irfoundry.layers.sine_position import sine_position_embedding
from irfoundry.layers.sparse_query import QueryExchange
from irfoundry.layers.two_way_transformer import TwoWayTransformer
from irfoundry.models._registry import register_model
from irfoundry.models.base import SegmentationModel, check_input_size

__all__ = ["SimIREncoder", "SimIRMaskDecoder", "SimIRStudent", "repvit_backbone", "simir", "simir_small"]

PAPER = "Zhang et al., Unleashing the Power of Generic Segmentation Models: A Simple Baseline for IRSTD, ACM MM 2024"
REFERENCE = "https://github.com/O937-blip/SimIR"


def _timm():
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ModelError("SimIR needs timm (RepViT encoder): pip install irfoundry[foundation]") from None


def repvit_backbone(variant: str = "repvit_m1_1", *, in_chans: int = 1, **timm_kwargs) -> nn.Module:
    """timm's RepViT ``variant`` (random weights) for ``in_chans`` channels, its stem convolutions set to
    stride 1 (SimIR's stride-1 stem: stages at strides 1/2/4/8). ``timm_kwargs`` (``embed_dim``, ``depth``)
    override the variant's widths and depths."""
    timm = _timm()
    net = timm.create_model(variant, pretrained=False, in_chans=in_chans, num_classes=0, **timm_kwargs)
    for conv in (net.stem.conv1.c, net.stem.conv2.c):
        conv.stride = (1, 1)
    net.stem.stride = 1
    return net


def _proj(cin: int, cout: int) -> ConvBNAct:
    """1x1 conv-BN-GELU (the released ``Conv2d_BN`` + GELU)."""
    return ConvBNAct(cin, cout, kernel_size=1, act=nn.GELU)


class SimIREncoder(nn.Module):
    """RepViT + sparse / dense queries (module docstring). ``forward(x)`` returns the four taps
    ``B x dim x H/s x W/s`` (s = 1, 2, 4, 8), the tokens ``B x num_tokens x dim`` and the full-resolution
    dense map ``B x dense_dim x H x W``; :meth:`mask` turns the last two into the encoder mask."""

    def __init__(self, backbone: nn.Module, widths: Sequence[int], *, dim: int = 256, num_tokens: int = 4,
                 heads: int = 8, ffn_dim: int = 2048, dense_dim: int = 8, deform_ffn_dim: int = 2048,
                 mask_dim: int = 32) -> None:
        super().__init__()
        widths = tuple(int(c) for c in widths)
        stages = getattr(backbone, "stages", ())
        if len(widths) != 4 or len(stages) != 4 or not all(hasattr(s.downsample, "pre_block") for s in stages[1:]):
            raise ModelError("SimIREncoder needs a 4-stage timm RepVit (stem, stages[i].downsample.pre_block, "
                             f"blocks) and 4 widths, got {type(backbone).__name__} and widths {widths}")
        self.widths, self.dim, self.dense_dim = widths, dim, dense_dim
        self.stem, self.stages = backbone.stem, backbone.stages
        self.taps = nn.ModuleList(_proj(c, dim) for c in widths)
        self.query_in = nn.ModuleList(_proj(c, dim) for c in widths)
        self.query_out = nn.ModuleList(_proj(dim, c) for c in widths)
        self.dense_in = nn.ModuleList(_proj(c, dense_dim) for c in widths)
        self.dense_out = nn.ModuleList(_proj(dense_dim, c) for c in widths[1:])
        self.exchange = QueryExchange(dim, heads, ffn_dim, dropout=0.0)
        self.query_feat = nn.Embedding(num_tokens, dim)
        self.query_embed = nn.Embedding(num_tokens, dim)
        self.deform = nn.ModuleList(MSDeformEncoderLayer(dense_dim, 2, 8, 4, deform_ffn_dim) for _ in widths[1:])
        for layer in self.deform:  # the released encoder: Xavier on the FFN, Deformable DETR's attention init
            for p in layer.ffn.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        self.mask_features = nn.Conv2d(dense_dim, mask_dim, 3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)

    def _sparse(self, i: int, x: Tensor, tokens: Tensor, token_pos: Tensor) -> tuple[Tensor, Tensor]:
        tokens, out = self.exchange(tokens, token_pos, self.query_in[i](x))
        return tokens, self.query_out[i](out)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        b = x.shape[0]
        tokens = self.query_feat.weight.repeat(b, 1, 1)  # copies: parameter views as module inputs break
        token_pos = self.query_embed.weight.repeat(b, 1, 1)  # FlopCounterMode's module hooks under no_grad
        x = self.stem(x)
        full = self.dense_in[0](x)
        full_pos = sine_position_embedding(full, self.dense_dim // 2)
        tokens, update = self._sparse(0, x, tokens, token_pos)
        x = self.stages[0](x + update)
        taps, dense_full = [], full
        for i in (1, 2, 3):
            ds = self.stages[i].downsample
            x = ds.pre_block(x)
            taps.append(self.taps[i - 1](x))
            x = ds.channel_downsample(ds.spatial_downsample(x))
            x = x + ds.ffn(x)
            dense = self.dense_in[i](x)
            dense_pos = sine_position_embedding(dense, self.dense_dim // 2)
            dense_full, dense = self.deform[i - 1]([full, dense], [full_pos, dense_pos])
            if i == 1:
                full = dense_full  # as released: later layers read the first layer's full-resolution output
            tokens, update = self._sparse(i, x, tokens, token_pos)
            x = self.stages[i].blocks(x + update + self.dense_out[i - 1](dense))
        taps.append(self.taps[3](x))
        return taps, tokens, dense_full

    def mask(self, tokens: Tensor, dense_full: Tensor) -> Tensor:
        """Encoder mask ``B x 1 x H x W`` from the last token and the full-resolution dense map."""
        embed = self.mask_embed(self.norm(tokens[:, -1]))
        return torch.einsum("bc,bchw->bhw", embed, self.mask_features(dense_full)).unsqueeze(1)


class SimIRMaskDecoder(nn.Module):
    """The released decoder (module docstring): ``forward(image B x dim x H x W, mask_prompt B x 1 x H x W,
    prompt_tokens B x N x dim) -> B x 1 x H x W`` mask logits (stride 1 throughout)."""

    def __init__(self, dim: int = 256, *, depth: int = 2, heads: int = 8, mlp_dim: int = 2048,
                 num_prompt_tokens: int = 8, mask_in_chans: int = 16) -> None:
        super().__init__()
        LayerNorm2d = _timm().layers.LayerNorm2d  # SAM's LayerNorm2d, as sam_decoder uses
        # sam_decoder imports timm: imported here, after the check above
        from irfoundry.models.sam_decoder import PositionEmbeddingRandom

        if dim % 8:
            raise ModelError(f"SimIRMaskDecoder: dim must be a multiple of 8, got {dim}")
        c4 = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(  # SAM's name; stride 1 here
            nn.Conv2d(1, c4, 1), LayerNorm2d(c4), nn.GELU(), nn.Conv2d(c4, mask_in_chans, 3, padding=1),
            LayerNorm2d(mask_in_chans), nn.GELU(), nn.Conv2d(mask_in_chans, dim, 1))
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.transformer = TwoWayTransformer(depth=depth, embedding_dim=dim, num_heads=heads, mlp_dim=mlp_dim)
        self.output_upscaling = nn.Sequential(  # SAM's name; no upsampling here
            nn.Conv2d(dim, dim // 4, 1), LayerNorm2d(dim // 4), nn.GELU(), nn.Conv2d(dim // 4, dim // 8, 3, padding=1),
            nn.GELU())
        self.output_hypernetworks_mlp = MLP(dim, dim, dim // 8, 3)
        self.query_feat = nn.Embedding(1, dim)
        self.query_embed = nn.Embedding(1, dim)
        self.sparse_embed = nn.Embedding(num_prompt_tokens, dim)

    def forward(self, image: Tensor, mask_prompt: Tensor, prompt_tokens: Tensor) -> Tensor:
        b, c, h, w = image.shape
        tokens = torch.cat([self.query_feat.weight.expand(b, -1, -1), prompt_tokens], 1)
        token_pos = torch.cat([self.query_embed.weight, self.sparse_embed.weight]).expand(b, -1, -1)
        src = image + self.mask_downscaling(mask_prompt)
        pos = _grid_pe(self.pe_layer, image).to(src.dtype).expand(b, -1, -1, -1)
        tokens, src = self.transformer(src, pos, tokens, token_pos)
        out = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = self.output_hypernetworks_mlp(tokens[:, 0])
        return torch.einsum("bc,bchw->bhw", hyper, out).unsqueeze(1)


def _grid_pe(pe_layer: nn.Module, x: Tensor) -> Tensor:
    """``1 x C x h x w``: ``PositionEmbeddingRandom`` at the pixel centres of ``x``'s grid, built from tensor
    ops on ``x.shape`` so a traced (ONNX) graph keeps the size dynamic (its ``forward(size)`` takes ints)."""
    h, w = x.shape[-2:]
    gy = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h
    gx = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w
    grid = torch.stack([gx[None, :].expand(h, w), gy[:, None].expand(h, w)], dim=-1)
    return pe_layer._pe_encoding(grid).permute(2, 0, 1).unsqueeze(0)


def _logit_affine() -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 1)
    nn.init.ones_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class SimIRStudent(SegmentationModel):
    """SimIR's student. ``B x in_chans x H x W -> B x 1 x H x W`` logits, ``H, W`` multiples of 8.

    Eval mode: the decoder mask. Training mode: ``[decoder, encoder, fpn]``, main first.

    Args:
        backbone: a 4-stage timm RepViT with a stride-1 stem (:func:`repvit_backbone`).
        widths: its stage widths.
        dim: width of the projections, tokens, neck and decoder (256).
        num_tokens: sparse tokens of the encoder and of the neck (4 each).
        heads: attention heads everywhere (8).
        ffn_dim: FFN width of the encoder's and the neck's query exchanges (2048).
        dense_dim, deform_ffn_dim: channels of the dense queries (8) and the deformable layers' FFN (2048).
        decoder_depth, decoder_mlp_dim: the two-way transformer (2, 2048).
        encoder_mask_dim: channels of the encoder mask's features (32).
        fpn_dropout: dropout of the neck's exchanges (0.5).
        mask_in_chans: hidden channels of the mask-prompt encoder (16).
    """

    input_multiple = 8
    logit_layers = ("decoder_logit", "encoder_logit", "fpn_logit")

    def __init__(self, backbone: nn.Module, widths: Sequence[int], *, dim: int = 256, num_tokens: int = 4,
                 heads: int = 8, ffn_dim: int = 2048, dense_dim: int = 8, deform_ffn_dim: int = 2048,
                 decoder_depth: int = 2, decoder_mlp_dim: int = 2048, encoder_mask_dim: int = 32,
                 fpn_dropout: float = 0.5, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.encoder = SimIREncoder(backbone, widths, dim=dim, num_tokens=num_tokens, heads=heads, ffn_dim=ffn_dim,
                                    dense_dim=dense_dim, deform_ffn_dim=deform_ffn_dim, mask_dim=encoder_mask_dim)
        self.neck = QueryFPN(dim, 4, num_tokens=num_tokens, num_encoder_tokens=num_tokens, heads=heads,
                             ffn_dim=ffn_dim, dropout=fpn_dropout, mask_dim=dim, groups=32)
        self.decoder = SimIRMaskDecoder(dim, depth=decoder_depth, heads=heads, mlp_dim=decoder_mlp_dim,
                                        num_prompt_tokens=2 * num_tokens, mask_in_chans=mask_in_chans)
        self.decoder_logit, self.encoder_logit, self.fpn_logit = _logit_affine(), _logit_affine(), _logit_affine()
        self.stem_in_chans = int(backbone.stem.conv1.c.in_channels)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        check_input_size(x, self.input_multiple)
        if x.shape[1] != self.stem_in_chans:
            raise ModelError(f"SimIR was built for {self.stem_in_chans} input channels, got {x.shape[1]}")
        taps, tokens, dense_full = self.encoder(x)
        mask_features, fpn_mask, fpn_tokens = self.neck(taps, tokens)
        fpn_mask = self.fpn_logit(fpn_mask)
        decoder_mask = self.decoder_logit(self.decoder(mask_features, fpn_mask, fpn_tokens))
        if not self.training:
            return decoder_mask
        return [decoder_mask, self.encoder_logit(self.encoder.mask(tokens, dense_full)), fpn_mask]


@register_model("simir", paper=PAPER, reference=REFERENCE)
def simir(*, in_chans: int = 1) -> SimIRStudent:
    """SimIR student as released (``configs/repvit.yaml``): RepViT-M1.1 (64/128/256/512, depths 2/2/12/2),
    256-d neck and tokens, FFN 2048, decoder depth 2 / MLP 2048 / 8 heads. Untrained (random weights).

    Ours, measured (:func:`~irfoundry.models.complexity.count_macs`): 24,892,654 parameters at ``in_chans=1``
    (24,893,230 at 3; RepViT 7.77M, encoder queries / projections 2.86M, neck 10.79M, decoder 3.47M) and
    206.9 GMACs at 1x1x256x256 in eval (207.8 G in training, with the encoder mask): every stride-1 layer at
    256 channels (the neck's 3x3 convolutions alone: 77 G) is the price of the released stride-1 design.
    ``published_params`` is ``None``: neither the README nor the released config states a count."""
    return SimIRStudent(repvit_backbone("repvit_m1_1", in_chans=in_chans), (64, 128, 256, 512))


SMALL_WIDTHS = (32, 64, 128, 256)


@register_model("simir_small", paper=PAPER, reference=REFERENCE)
def simir_small(*, in_chans: int = 1) -> SimIRStudent:
    """[ours] A CPU-sized SimIR: the same architecture with RepViT-M1.1 at half width (32/64/128/256, depths
    2/2/12/2 kept), a 64-d neck / tokens / decoder, FFN and decoder MLP 256 (from 2048), deformable layers'
    FFN 64 (from 2048). Kept: 4 + 4 tokens, 8 heads, 8-channel dense queries, decoder depth 2, the three masks.

    Ours, measured: 2,887,078 parameters at ``in_chans=1`` (2,887,366 at 3) and 18.9 GMACs at 1x1x256x256
    (eval; 19.2 G in training), 11x fewer than ``simir``; MACs scale with the crop (64x64: 1/16)."""
    backbone = repvit_backbone("repvit_m1_1", in_chans=in_chans, embed_dim=SMALL_WIDTHS)
    return SimIRStudent(backbone, SMALL_WIDTHS, dim=64, ffn_dim=256, deform_ffn_dim=64, decoder_mlp_dim=256)
