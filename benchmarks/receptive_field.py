"""How far an output pixel of each host reaches into its input (docs/deploy.md, tiling's exactness).

    OMP_NUM_THREADS=1 python benchmarks/receptive_field.py [--size 384]

Per registered host (seed-0 random weights, eval mode, a ``size x size`` standard-normal input): the support of
the gradient of the centre 4 x 4 output pixels' sum with respect to the input, as a radius in pixels (Chebyshev
distance from the centre), and the radius holding 99.9 % of the gradient's magnitude. A support reaching the
input's edge means global context (or a receptive field larger than the input); a host whose gradient is zero
at initialisation is reported as such.
"""

from __future__ import annotations

import argparse

import torch

from irfoundry.models import create_model, list_models
from irfoundry.models.base import main_output


def radii(name: str, n: int) -> tuple[int, int] | None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 1, n, n, requires_grad=True)
    main_output(model(x))[0, 0, n // 2 - 2 : n // 2 + 2, n // 2 - 2 : n // 2 + 2].sum().backward()
    g = x.grad[0, 0].abs()
    if not g.any():
        return None
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    r = torch.maximum((yy - n // 2).abs(), (xx - n // 2).abs())
    support = int(r[g > 0].max())
    total = g.sum()
    effective = next(k for k in range(n) if g[r <= k].sum() >= 0.999 * total)
    return support, effective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args()
    for name in list_models():
        got = radii(name, args.size)
        if got is None:
            print(f"{name:<10} gradient zero at initialisation")
        else:
            edge = " (reaches the input's edge)" if got[0] >= args.size // 2 - 1 else ""
            print(f"{name:<10} support radius {got[0]}{edge}, 99.9 % of |grad| within {got[1]}")


if __name__ == "__main__":
    main()
