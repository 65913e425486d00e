"""SCTransNet's channel transformer: spatial-channel cross transformer blocks over the four skip connections.

Yuan, Qin, Yan, Akhtar, Mian, "SCTransNet: Spatial-channel Cross Transformer Network for Infrared Small Target
Detection", IEEE TGRS 62, 2024 (arXiv 2401.15583). Ported from the authors' xdFai/SCTransNet
``model/SCTransNet.py`` (classes ``Channel_Embeddings``, ``Reconstruct``, ``Attention_org``, ``LayerNorm3d``,
``eca_layer_2d``, ``FeedForward``, ``Block_ViT``, ``Encoder``, ``ChannelTransformer``); parameter names and their
order are the reference's, so its checkpoints load strictly. Used by :mod:`irfoundry.models.sctransnet`.

Data flow of :class:`ChannelTransformer` (levels ``i = 1..4`` with ``C_i`` channels at stride ``2^(i-1)``, patch
sizes ``p_i`` such that every level is cut into the same ``h x w`` token grid, ``h = H / (2^(i-1) p_i)``):

1. ``embeddings_i``: a ``p_i x p_i`` conv with stride ``p_i`` (``C_i -> C_i``): ``B x C_i x h x w`` tokens;
2. ``encoder``: ``num_layers`` :class:`SCTBlock` s (SSCA attention + CFN feed-forward, pre-norm residuals),
   then a layer norm per level;
3. ``reconstruct_i``: bilinear up-sampling by ``p_i`` (``align_corners=False``), 1x1 conv, BN, ReLU, plus the
   input of the level: ``B x C_i x H_i x W_i``.

Weights the reference registers but never reads (kept, frozen, for strict checkpoint loading): each embedding's
``position_embeddings`` (``1 x n_patches x C_i``, its shape set by the reference's ``img_size``) and the sixteen
scalars ``q{i}_attn{j}`` of every attention (the reference marks them "useless"). They are parameters with
``requires_grad=False``: the reference's optimiser holds them but they never receive a gradient, so they stay at
their initial values (zeros and 0.2) in its trained checkpoints too. The reference's ``Dropout`` modules (never
called) and its ``vis`` option (attention weights, always ``None``) are not built.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ChannelTransformer", "SCTBlock", "ChannelCrossAttention", "ComplementaryFFN", "ChannelLayerNorm"]

#: the reference's ``FeedForward(ffn_expansion_factor=2.66)``
FFN_EXPANSION = 2.66


def _frozen(*shape: int, value: float = 0.0) -> nn.Parameter:
    """A parameter the reference never reads: kept for checkpoint compatibility, never trained."""
    return nn.Parameter(torch.full(shape, value), requires_grad=False)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of a ``B x C x H x W`` map (the reference's ``LayerNorm3d('WithBias')``:
    per pixel, biased variance, eps 1e-5, weight and bias under ``body``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.LayerNorm(channels, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ECA(nn.Module):
    """Efficient channel attention (the reference's ``eca_layer_2d``): global average pooling, a 1-D conv of
    size ``k`` across channels (no bias), sigmoid gate. ``B x C x H x W -> B x C x H x W``."""

    def __init__(self, k_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, 1, k_size, padding=k_size // 2, bias=False), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        gate = self.conv(F.adaptive_avg_pool2d(x, 1).view(b, 1, c)).view(b, c, 1, 1)
        return gate * x


class ComplementaryFFN(nn.Module):
    """Complementary feed-forward network (CFN; the reference's ``FeedForward``, no biases).

    1x1 conv ``C -> 2 * hidden`` (``hidden = int(2.66 C)``), split in two halves: a depthwise 3x3 and a
    depthwise 5x5 conv, each followed by ReLU, concatenated, 1x1 conv back to ``C``, then :class:`ECA`.
    ``B x C x H x W -> B x C x H x W``.
    """

    def __init__(self, channels: int, expansion: float = FFN_EXPANSION) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, hidden * 2, 1, bias=False)
        self.dwconv3x3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.dwconv5x5 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=False)
        self.project_out = nn.Conv2d(hidden * 2, channels, 1, bias=False)
        self.eca = ECA()

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.project_in(x).chunk(2, dim=1)
        x = torch.cat([F.relu(self.dwconv3x3(a)), F.relu(self.dwconv5x5(b))], dim=1)
        return self.eca(self.project_out(x))


class ChannelCrossAttention(nn.Module):
    """Spatial-embedded single-head channel-cross attention (SSCA; the reference's ``Attention_org``).

    Queries per level ``i``: 1x1 conv ``mhead{i}`` then a grouped 3x3 conv ``q{i}`` (2 channels per group);
    keys and values from the concatenation of all levels (``KV = sum(C_i)`` channels): 1x1 conv then a depthwise
    3x3 conv (``mheadk``/``k``, ``mheadv``/``v``). Queries and keys are L2-normalised over the ``h w`` token
    positions; the ``C_i x KV`` channel affinities are divided by ``sqrt(KV)``, instance-normalised (``psi``),
    soft-maxed over ``KV`` and applied to the values; a 1x1 conv ``project_out{i}`` ends each level. No biases.

    Input: four ``B x C_i x h x w`` maps and their normalised concatenation ``B x KV x h x w``;
    output: four ``B x C_i x h x w`` maps.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.kv_size = kv = sum(channels)
        n = len(channels)
        for i in range(1, n + 1):  # never read by the reference ("useless"); own parameters come first in its keys
            for j in range(1, n + 1):
                setattr(self, f"q{i}_attn{j}", _frozen(1, value=0.2))
        self.psi = nn.InstanceNorm2d(1)
        for i, c in enumerate(channels, 1):
            setattr(self, f"mhead{i}", nn.Conv2d(c, c, 1, bias=False))
        self.mheadk = nn.Conv2d(kv, kv, 1, bias=False)
        self.mheadv = nn.Conv2d(kv, kv, 1, bias=False)
        for i, c in enumerate(channels, 1):
            setattr(self, f"q{i}", nn.Conv2d(c, c, 3, padding=1, groups=c // 2, bias=False))
        self.k = nn.Conv2d(kv, kv, 3, padding=1, groups=kv, bias=False)
        self.v = nn.Conv2d(kv, kv, 3, padding=1, groups=kv, bias=False)
        for i, c in enumerate(channels, 1):
            setattr(self, f"project_out{i}", nn.Conv2d(c, c, 1, bias=False))
        self.num_levels = n

    def forward(self, embs: Sequence[Tensor], emb_all: Tensor) -> list[Tensor]:
        b, _, h, w = emb_all.shape
        # B x 1 x C x (h w): the reference's single head kept as a dimension
        k = F.normalize(self.k(self.mheadk(emb_all)).reshape(b, 1, self.kv_size, h * w), dim=-1)
        v = self.v(self.mheadv(emb_all)).reshape(b, 1, self.kv_size, h * w)
        outs = []
        for i, emb in enumerate(embs, 1):
            c = emb.shape[1]
            q = getattr(self, f"q{i}")(getattr(self, f"mhead{i}")(emb)).reshape(b, 1, c, h * w)
            q = F.normalize(q, dim=-1)
            attn = (q @ k.transpose(-2, -1)) / math.sqrt(self.kv_size)  # B x 1 x C_i x KV
            probs = torch.softmax(_instance_norm(attn, self.psi.eps), dim=3)
            out = (probs @ v).mean(dim=1).reshape(b, c, h, w)
            outs.append(getattr(self, f"project_out{i}")(out))
        return outs


def _instance_norm(x: Tensor, eps: float) -> Tensor:
    """``nn.InstanceNorm2d`` without affine or running statistics (the reference's ``psi``), written out: the ONNX
    exporter refuses InstanceNormalization when the channel count is not static."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = (x - mean).square().mean(dim=(-2, -1), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


class SCTBlock(nn.Module):
    """Spatial-channel cross transformer block (SCTB; the reference's ``Block_ViT``).

    ``x_i <- x_i + SSCA(LN(x_1), .., LN(x_4); LN(cat(x_1..x_4)))_i``, then ``x_i <- x_i + CFN_i(LN(x_i))``
    (:class:`ChannelLayerNorm` s ``attn_norm{i}``, ``attn_norm``, ``ffn_norm{i}``). Four ``B x C_i x h x w``
    maps in and out.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        for i, c in enumerate(channels, 1):
            setattr(self, f"attn_norm{i}", ChannelLayerNorm(c))
        self.attn_norm = ChannelLayerNorm(sum(channels))
        self.channel_attn = ChannelCrossAttention(channels)
        for i, c in enumerate(channels, 1):
            setattr(self, f"ffn_norm{i}", ChannelLayerNorm(c))
        for i, c in enumerate(channels, 1):
            setattr(self, f"ffn{i}", ComplementaryFFN(c))
        self.num_levels = len(channels)

    def forward(self, embs: Sequence[Tensor]) -> list[Tensor]:
        levels = range(1, self.num_levels + 1)
        normed = [getattr(self, f"attn_norm{i}")(e) for i, e in zip(levels, embs)]
        attended = self.channel_attn(normed, self.attn_norm(torch.cat(list(embs), dim=1)))
        xs = [e + a for e, a in zip(embs, attended)]
        return [x + getattr(self, f"ffn{i}")(getattr(self, f"ffn_norm{i}")(x)) for i, x in zip(levels, xs)]


class CrossTransformerEncoder(nn.Module):
    """``num_layers`` :class:`SCTBlock` s (``layer.0 ..``), then a :class:`ChannelLayerNorm` per level
    (``encoder_norm{i}``); the reference's ``Encoder``."""

    def __init__(self, channels: Sequence[int], num_layers: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(SCTBlock(channels) for _ in range(num_layers))
        for i, c in enumerate(channels, 1):
            setattr(self, f"encoder_norm{i}", ChannelLayerNorm(c))

    def forward(self, embs: Sequence[Tensor]) -> list[Tensor]:
        for block in self.layer:
            embs = block(embs)
        return [getattr(self, f"encoder_norm{i}")(e) for i, e in enumerate(embs, 1)]


class ChannelEmbedding(nn.Module):
    """Patch embedding of one level (the reference's ``Channel_Embeddings``): a ``p x p`` conv with stride ``p``,
    ``C -> C`` (bias). ``B x C x H_i x W_i -> B x C x H_i/p x W_i/p``. ``position_embeddings`` is never read."""

    def __init__(self, channels: int, patch_size: int, img_size: int) -> None:
        super().__init__()
        n_patches = (img_size // patch_size) ** 2
        self.position_embeddings = _frozen(1, n_patches, channels)
        self.patch_embeddings = nn.Conv2d(channels, channels, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.patch_embeddings(x)


class Reconstruct(nn.Module):
    """Token grid back to a level's resolution (the reference's ``Reconstruct`` with ``kernel_size=1``): bilinear
    up-sampling by ``scale`` (``align_corners=False``), 1x1 conv (bias), BN, ReLU."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.norm = nn.BatchNorm2d(channels)
        self.scale = int(scale)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=(self.scale, self.scale), mode="bilinear")
        return F.relu(self.norm(self.conv(x)))


class ChannelTransformer(nn.Module):
    """The reference's ``ChannelTransformer`` (module docstring): four skip features ``B x C_i x H_i x W_i`` in,
    ``reconstruct_i(encoder(embeddings(..))_i) + x_i`` out (same shapes).

    Args:
        channels: ``C_1 .. C_4`` (reference: ``32, 64, 128, 256``).
        patch_sizes: ``p_1 .. p_4`` (reference ``16, 8, 4, 2``), with ``2^(i-1) p_i`` equal for all levels.
        num_layers: number of :class:`SCTBlock` s (reference 4).
        img_size: only sets the shape of the unused ``position_embeddings`` (reference 256).
    """

    def __init__(self, channels: Sequence[int], patch_sizes: Sequence[int], num_layers: int, img_size: int) -> None:
        super().__init__()
        for i, (c, p) in enumerate(zip(channels, patch_sizes), 1):
            setattr(self, f"embeddings_{i}", ChannelEmbedding(c, p, img_size // 2 ** (i - 1)))
        self.encoder = CrossTransformerEncoder(channels, num_layers)
        for i, (c, p) in enumerate(zip(channels, patch_sizes), 1):
            setattr(self, f"reconstruct_{i}", Reconstruct(c, p))
        self.num_levels = len(channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        levels = range(1, self.num_levels + 1)
        embs = [getattr(self, f"embeddings_{i}")(f) for i, f in zip(levels, features)]
        encoded = self.encoder(embs)
        return [getattr(self, f"reconstruct_{i}")(e) + f for i, e, f in zip(levels, encoded, features)]
