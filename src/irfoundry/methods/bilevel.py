"""The outer step of semantic-prior KD: cluster reweighting and its Gauss-Newton hypergradient
(arXiv 2605.14346; code yuanhang-yao/semantic-prior ``utils/losses.py`` and ``utils/gn_bilevel.py``, MIT).

Cluster weights (:func:`cluster_weights`, ``[code]``): each image ``i`` of a batch has a cluster ``c_i``
and every cluster a learnable logit ``alpha_c`` (initialised to 0)::

    r_i = alpha[c_i] - mean_batch(alpha[c])      r_i <- ln2 * tanh(r_i / ln2)      w_i = exp(r_i) / mean(exp(r))

so ``exp(r_i)`` lies in (1/2, 2) and the weights average 1 over the batch (the mean is taken without
gradient, as released, with the released ``+ 1e-6`` in the denominator).

Hypergradient (:func:`gauss_newton_hypergradient`, ``[code]``): with ``F = L_out(val batch)`` and ``f =
L_out(train batch)`` over the student parameters ``theta`` and the cluster logits ``alpha``::

    c = <dF/dtheta, df/dtheta> / (|df/dtheta|^2 + 1e-12)
    g = dF/d(theta, alpha) + eta * c * df/d(theta, alpha)

``eta`` is the inner learning rate: a rank-one Gauss-Newton stand-in for the implicit term of the bilevel
gradient. ``g`` is written into ``.grad`` of ``theta`` and ``alpha``; the outer optimiser (AdamW, weight
decay 0.01) then steps.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["cluster_weights", "gauss_newton_hypergradient"]

LN2 = math.log(2.0)


def cluster_weights(alpha: Tensor, clusters: Tensor, *, detach: bool = False) -> Tensor:
    """Per-image weights ``B`` of a batch whose images belong to ``clusters`` (``B`` long) given the
    cluster logits ``alpha`` (``K``); ``detach``: no gradient to ``alpha`` (the inner step)."""
    raw = alpha[clusters]
    if detach:
        raw = raw.detach()
    raw = raw - raw.mean()
    w = torch.exp(LN2 * torch.tanh(raw / LN2))
    return w / (w.mean().detach() + 1e-6)


def gauss_newton_hypergradient(outer_val: Callable[[], Tensor], outer_train: Callable[[], Tensor],
                               theta: Sequence[Tensor], alpha: Sequence[Tensor], eta: float) -> dict:
    """Write ``g`` (module docstring) into ``p.grad`` of every ``theta`` and ``alpha`` tensor.

    Args:
        outer_val / outer_train: closures computing ``F`` and ``f`` (scalar tensors) from the current
            parameters; each is called once.
        theta: the student's parameters; alpha: the cluster logits (and anything else only the outer
            loss sees).
        eta: the inner learning rate.

    Returns:
        ``{"F", "f", "c"}`` as floats (for logging).
    """
    theta, alpha = list(theta), list(alpha)
    params = theta + alpha
    big_f = outer_val()
    d_big = torch.autograd.grad(big_f, params, allow_unused=True)
    small_f = outer_train()
    d_small = torch.autograd.grad(small_f, params, allow_unused=True)

    def zeros(grads, ps):
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, ps)]

    d_big, d_small = zeros(d_big, params), zeros(d_small, params)
    n = len(theta)
    dot = sum((a * b).sum() for a, b in zip(d_big[:n], d_small[:n]))
    norm2 = sum((b * b).sum() for b in d_small[:n])
    c = (dot / (norm2 + 1e-12)).detach() if n else torch.zeros(())
    for p, gb, gs in zip(params, d_big, d_small):
        p.grad = (gb + eta * c * gs).detach().clone()
    return {"F": float(big_f.detach()), "f": float(small_f.detach()), "c": float(c)}
