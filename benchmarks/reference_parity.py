"""Our evaluation against BasicIRSTD's own test loop, on the same weights and images (issue 17, item 2).

    OMP_NUM_THREADS=1 python benchmarks/reference_parity.py --basicirstd /path/to/BasicIRSTD \
        --dataset nuaa213 --model acm --weights RUN_OR_SAFETENSORS --out parity.json

``--basicirstd`` is a work tree of https://github.com/XinyiYing/BasicIRSTD (commit 95650c3 was used):
its ``dataset.TestSetLoader`` (``Normalized`` then ``utils.PadImg``), ``metrics.mIoU`` / ``metrics.PD_FA``
and model file run here unchanged, in test.py's loop (predict, crop to the native size, threshold). Nothing
of it is copied into irfoundry. The only deviation: ``PD_FA.get()`` calls ``float()`` on a one-element
array, which numpy 2 refuses, so Pd and Fa are read from the same counters it divides.

Datasets are laid out for ``TestSetLoader`` under ``--work`` with symbolic links (SIRST v1 masks are named
``*_pixels0.png``): ``nuaa214`` is BasicIRSTD's NUAA-SIRST test list, ``nuaa213`` the same without
``Misc_111`` (the one image whose mask is larger than the image: BasicIRSTD compares the prediction with the
mask's top-left corner, irfoundry rescales the mask to the image), ``nudt664`` its NUDT-SIRST test list.

Without ``--weights`` the network gets deterministic weights (:func:`deterministic_state`; the golden
test ``tests/engine/test_reference_parity.py`` uses the same rule). irfoundry's side is ``irfoundry eval``
on an imported checkpoint: the weights are written in BasicIRSTD's format and read back with
``irfoundry models import --norm``, as a user with a reference checkpoint would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {  # name: (BasicIRSTD folder name, our dataset root, test list, image ids to leave out, mask suffix)
    "nuaa214": ("NUAA-SIRST", DATA / "sirst", DATA / "splits/basicirstd/NUAA-SIRST/test.txt", (), "_pixels0"),
    "nuaa213": ("NUAA-SIRST", DATA / "sirst", DATA / "splits/basicirstd/NUAA-SIRST/test.txt", ("Misc_111",), "_pixels0"),
    "nudt664": ("NUDT-SIRST", DATA / "nudt_sirst", DATA / "splits/basicirstd/NUDT-SIRST/test.txt", (), ""),
}
REFERENCE_MODELS = {"acm": ("model.ACM.model_ACM", "ASKCResUNet", {}), "dnanet": ("model.DNANet.model_DNANet", "DNANet",
                                                                              {"mode": "test"})}


def deterministic_state(model_name: str, logit_shift: float) -> dict[str, torch.Tensor]:
    """Hash-like weights (the host tests' rule, keys taken in sorted order), BN statistics kept sane, the
    output bias lowered by ``logit_shift`` so that a small share of pixels is predicted."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
    from basicirstd_helpers import reference_tensor

    from irfoundry.models._registry import create_model

    state = create_model(model_name).state_dict()
    out = {k: reference_tensor(i, k, tuple(state[k].shape), state[k].dtype) for i, k in enumerate(sorted(state))}
    last_bias = [k for k in state if k.endswith("bias")][-1]
    out[last_bias] = out[last_bias] - logit_shift
    return out


def ids_of(list_file: Path, leave_out=()) -> list[str]:
    return [s.strip() for s in list_file.read_text().splitlines() if s.strip() and s.strip() not in leave_out]


def basicirstd_folder(work: Path, dataset: str) -> tuple[Path, str]:
    """``work/datasets/NAME_dataset`` in TestSetLoader's layout (links to the real files)."""
    folder, root, lst, leave_out, suffix = DATASETS[dataset]
    name = f"{folder}_{dataset}"
    base = work / "datasets" / name
    for sub in ("images", "masks", "img_idx"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    ids = ids_of(lst, leave_out)
    for i in ids:
        for sub, src in (("images", root / "images" / f"{i}.png"), ("masks", root / "masks" / f"{i}{suffix}.png")):
            link = base / sub / f"{i}.png"
            if not link.exists():
                link.symlink_to(src)
    (base / "img_idx" / f"test_{name}.txt").write_text("\n".join(ids) + "\n")
    return work / "datasets", name


def reference_metrics(basicirstd: Path, model_name: str, state: dict, dataset_dir: Path, name: str,
                      norm255: tuple[float, float], threshold: float) -> dict:
    """BasicIRSTD's test.py loop with its own loader, model and metrics."""
    import importlib

    sys.path.insert(0, str(basicirstd))
    from dataset import TestSetLoader  # BasicIRSTD's
    from metrics import PD_FA, mIoU  # BasicIRSTD's

    module, cls, kwargs = REFERENCE_MODELS[model_name]
    net = getattr(importlib.import_module(module), cls)(**kwargs)
    net.load_state_dict(state, strict=True)
    net.eval()
    test_set = TestSetLoader(str(dataset_dir), name, name, {"mean": norm255[0], "std": norm255[1]})
    iou, pdfa = mIoU(), PD_FA()
    with torch.no_grad():
        for img, gt_mask, size, _ in torch.utils.data.DataLoader(test_set, batch_size=1, shuffle=False):
            pred = net.forward(img)
            pred = pred[:, :, :size[0], :size[1]]
            gt_mask = gt_mask[:, :, :size[0], :size[1]]
            iou.update((pred > threshold).cpu(), gt_mask)
            pdfa.update((pred[0, 0, :, :] > threshold).cpu(), gt_mask[0, 0, :, :], size)
    return {"iou": float(iou.get()[1]), "pd": pdfa.PD / pdfa.target,
            "fa": float((pdfa.dismatch_pixel / pdfa.all_pixel).reshape(-1)[0]), "n_targets": int(pdfa.target),
            "n_images": len(test_set)}


def ours(model_name: str, state: dict, dataset: str, norm255: tuple[float, float], threshold: float, work: Path) -> dict:
    """``irfoundry models import`` of the weights in BasicIRSTD's format, then ``irfoundry eval --json``."""
    _, root, lst, leave_out, _ = DATASETS[dataset]
    ckpt, weights, split = work / f"{model_name}_ref.pth.tar", work / f"{model_name}.safetensors", work / f"{dataset}.txt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, ckpt)
    split.write_text("\n".join(ids_of(lst, leave_out)) + "\n")
    irf = [sys.executable, "-m", "irfoundry"]
    subprocess.run(irf + ["models", "import", str(ckpt), "--model", model_name, "--norm", f"{norm255[0]},{norm255[1]}",
                          "--out", str(weights)], check=True, capture_output=True)
    done = subprocess.run(irf + ["eval", "--checkpoint", str(weights), "--data", str(root), "--split", str(split),
                                 "--threshold", str(threshold), "--json", "--threads", "1"],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--basicirstd", type=Path, required=True, help="work tree of XinyiYing/BasicIRSTD")
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--model", choices=sorted(REFERENCE_MODELS), required=True)
    ap.add_argument("--weights", type=Path, help="irfoundry run folder or .safetensors (default: deterministic)")
    ap.add_argument("--logit-shift", type=float, default=0.0, help="deterministic weights: output bias shift")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/irfoundry_parity"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.weights is not None:
        path = a.weights / "last.safetensors" if a.weights.is_dir() else a.weights
        state = load_file(path)
        norm = json.loads(path.with_suffix(".json").read_text())["norm"]
        norm255 = (norm["mean"] * 255.0, norm["std"] * 255.0)
        source = str(path)
    else:
        state = deterministic_state(a.model, a.logit_shift)
        norm255 = (101.06385040283203, 34.619606018066406) if a.dataset.startswith("nuaa") else \
            (107.80905151367188, 33.02274703979492)  # BasicIRSTD's get_img_norm_cfg values
        source = f"deterministic (logit shift {a.logit_shift})"
    dataset_dir, name = basicirstd_folder(a.work, a.dataset)
    ref = reference_metrics(a.basicirstd, a.model, state, dataset_dir, name, norm255, a.threshold)
    mine = ours(a.model, state, a.dataset, norm255, a.threshold, a.work)
    report = {"model": a.model, "weights": source, "dataset": a.dataset, "threshold": a.threshold,
              "norm_0_255": norm255, "basicirstd": ref, "irfoundry": {k: mine[k] for k in ("iou", "pd", "fa", "n_targets",
                                                                                         "n_images", "padding")},
              "equal": {k: math.isclose(ref[k], mine[k], rel_tol=1e-6, abs_tol=1e-12) for k in ("iou", "pd", "fa")}}
    text = json.dumps(report, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
