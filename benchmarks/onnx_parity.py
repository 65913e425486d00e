"""ONNX Runtime vs PyTorch probabilities per host on real SIRST images (the numbers in docs/deploy.md).

    OMP_NUM_THREADS=1 python benchmarks/onnx_parity.py --images ../shared/data/sirst/images

Every registered host with seed-0 random weights and perturbed BatchNorm statistics (as
``tests/deploy/test_onnx.py``), exported with ``irfoundry.engine.export.export(format="onnx")``, run through the
one inference path with both backends on the first three images of the folder; prints max |p_onnx - p_torch|.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from irfoundry.data.io import read_image
from irfoundry.engine.export import export
from irfoundry.engine.inference import Predictor
from irfoundry.models import create_model, list_models
from irfoundry.models.checkpoint import save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True)
    args = parser.parse_args()
    images = [read_image(p) for p in sorted(Path(args.images).glob("*.png"))[:3]]
    print("images:", [im.shape for im in images])
    with tempfile.TemporaryDirectory() as tmp:
        for name in list_models():
            torch.manual_seed(0)
            model = create_model(name)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.8, 1.2)
            weights = save_weights(model, Path(tmp) / f"{name}.safetensors", extra={"norm": {"mean": 0.42, "std": 0.18}})
            onnx_file = export(weights, Path(tmp) / f"{name}.onnx", format="onnx")["out"]
            a, _ = Predictor.from_checkpoint(weights)
            b, _ = Predictor.from_checkpoint(onnx_file)
            diff = max(float(np.abs(a.predict(im) - b.predict(im)).max()) for im in images)
            print(f"{name:<10} max |dp| {diff:.1e}")


if __name__ == "__main__":
    main()
