"""Semantic-prior KD's outer step: cluster weights and the Gauss-Newton hypergradient, every derivative
checked against central finite differences on a tiny weighted logistic regression (float64)."""

from __future__ import annotations

import math

import torch

from irfoundry.methods.bilevel import LN2, cluster_weights, gauss_newton_hypergradient


def test_cluster_weights_lie_in_half_to_two_before_normalising_and_average_one():
    torch.manual_seed(0)
    alpha = torch.randn(7, dtype=torch.float64) * 5  # large logits: the tanh bound matters
    clusters = torch.randint(0, 7, (16,))
    raw = alpha[clusters] - alpha[clusters].mean()
    unnormalised = torch.exp(LN2 * torch.tanh(raw / LN2))
    assert unnormalised.min() > 0.5 and unnormalised.max() < 2.0
    w = cluster_weights(alpha, clusters)
    assert abs(float(w.mean()) - 1.0) < 1e-5 and torch.allclose(w, unnormalised / (unnormalised.mean() + 1e-6))
    # equal logits: all weights 1 (up to the released 1e-6)
    assert torch.allclose(cluster_weights(torch.zeros(3), torch.tensor([0, 1, 2, 2])), torch.ones(4), atol=1e-5)
    alpha.requires_grad_(True)
    assert not cluster_weights(alpha, clusters, detach=True).requires_grad
    assert cluster_weights(alpha, clusters).requires_grad


def _problem():
    g = torch.Generator().manual_seed(3)
    xt, xv = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    yt, yv = (torch.rand(12, generator=g) > 0.5).double(), (torch.rand(10, generator=g) > 0.5).double()
    ct, cv = torch.randint(0, 3, (12,), generator=g), torch.randint(0, 3, (10,), generator=g)

    def loss(theta, alpha, x, y, c, frozen_alpha=None):
        per = torch.nn.functional.binary_cross_entropy_with_logits(x @ theta[:3] + theta[3], y, reduction="none")
        w = cluster_weights(alpha, c)
        if frozen_alpha is not None:
            # the released weights divide by their batch mean *without gradient*: a finite difference must
            # hold that divisor at its value for the current alpha to match what autograd differentiates
            def unnorm(a):
                raw = a[c] - a[c].mean()
                return torch.exp(LN2 * torch.tanh(raw / LN2))

            w = unnorm(alpha) / (unnorm(frozen_alpha).mean() + 1e-6)
        return (w * per).mean()

    return (lambda th, al, fa=None: loss(th, al, xv, yv, cv, fa)), (lambda th, al, fa=None: loss(th, al, xt, yt, ct, fa))


def _fd(fn, theta, alpha, which, h=1e-6):
    base = [theta.detach().clone(), alpha.detach().clone()]
    out = torch.zeros_like(base[which])
    for i in range(out.numel()):
        plus, minus = [b.clone() for b in base], [b.clone() for b in base]
        plus[which].view(-1)[i] += h
        minus[which].view(-1)[i] -= h
        out.view(-1)[i] = (fn(*plus, base[1]) - fn(*minus, base[1])) / (2 * h)
    return out


def test_hypergradient_equals_the_formula_with_finite_difference_derivatives():
    big, small = _problem()
    theta = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.4, -0.7, 0.2], dtype=torch.float64, requires_grad=True)
    eta = 0.05
    info = gauss_newton_hypergradient(lambda: big(theta, alpha), lambda: small(theta, alpha), [theta], [alpha], eta)
    dF_t, df_t = _fd(big, theta, alpha, 0), _fd(small, theta, alpha, 0)
    dF_a, df_a = _fd(big, theta, alpha, 1), _fd(small, theta, alpha, 1)
    c = float((dF_t * df_t).sum() / ((df_t * df_t).sum() + 1e-12))
    assert math.isclose(info["c"], c, rel_tol=1e-6)
    assert torch.allclose(theta.grad, dF_t + eta * c * df_t, atol=1e-8)
    assert torch.allclose(alpha.grad, dF_a + eta * c * df_a, atol=1e-8)
    assert alpha.grad.abs().sum() > 0  # the cluster logits do receive a gradient


def test_an_outer_step_lowers_the_validation_loss_on_the_tiny_problem():
    big, small = _problem()
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    alpha = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([theta, alpha], lr=0.05, weight_decay=0.01)
    start = float(big(theta, alpha).detach())
    for _ in range(20):
        opt.zero_grad()
        gauss_newton_hypergradient(lambda: big(theta, alpha), lambda: small(theta, alpha), [theta], [alpha], 1e-3)
        opt.step()
    assert float(big(theta, alpha).detach()) < start
