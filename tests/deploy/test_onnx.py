"""ONNX export: parity with PyTorch for every registered host, metadata, and the errors of bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from deploy_helpers import NORM, saved_host  # noqa: E402

from irfoundry.data.io import read_image  # noqa: E402
from irfoundry.deploy.onnx import read_onnx_meta  # noqa: E402
from irfoundry.engine.evaluate import evaluate  # noqa: E402
from irfoundry.engine.export import export  # noqa: E402
from irfoundry.engine.inference import Predictor  # noqa: E402
from irfoundry.engine.predict import predict  # noqa: E402
from irfoundry.errors import CheckpointError, ConfigError  # noqa: E402
from irfoundry.models import list_models  # noqa: E402


REFUSED = ("sam_teacher",)  # models that declare SegmentationModel.onnx_refusal (tested below)
EXPORTABLE = [m for m in list_models() if m not in REFUSED]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """host name -> (weights file, onnx file), each host exported once."""
    folder = tmp_path_factory.mktemp("onnx")
    files = {}
    for name in EXPORTABLE:
        weights = saved_host(name, folder)
        files[name] = (weights, export(weights, folder / f"{name}.onnx", format="onnx")["out"])
    return files


def _max_prob_diff(weights, onnx_file, images) -> float:
    torch_pred, _ = Predictor.from_checkpoint(weights)
    onnx_pred, meta = Predictor.from_checkpoint(onnx_file)
    assert meta["backend"] == "onnx" and onnx_pred.multiple == torch_pred.multiple
    return max(float(np.abs(torch_pred.predict(im) - onnx_pred.predict(im)).max()) for im in images)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTABLE)
def test_onnx_matches_torch_on_synthetic_images(exported, tiny_synth, name):
    images = [read_image(p) for p in sorted((tiny_synth / "images").glob("*.png"))[:3]]
    assert _max_prob_diff(*exported[name], images) < 1e-4


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name", EXPORTABLE)
def test_onnx_matches_torch_on_real_sirst_images(exported, shared_data, name):
    # three SIRST test images of different sizes, none a multiple of 32 on both sides
    images = [read_image(p) for p in sorted((shared_data / "sirst" / "images").glob("*.png"))[:3]]
    assert len({im.shape for im in images}) > 1
    assert _max_prob_diff(*exported[name], images) < 1e-4


def test_models_that_declare_a_refusal_are_refused_before_anything_is_written(tmp_path):
    weights = saved_host("sam_teacher", tmp_path)
    with pytest.raises(ConfigError, match="sam_teacher is not exported to ONNX: a training-time teacher"):
        export(weights, tmp_path / "t.onnx", format="onnx")
    assert not (tmp_path / "t.onnx").exists()


def test_onnx_metadata_carries_what_prediction_needs(unet_weights, tmp_path):
    result = export(unet_weights, tmp_path / "m", format="onnx", threshold=0.35)
    assert result["out"].endswith("m.onnx") and result["params"] > 0 and result["parity_max_abs_diff"] < 1e-5
    meta = read_onnx_meta(result["out"])
    assert meta["norm"] == NORM and meta["input_multiple"] == 32 and meta["padding"] == "multiple"
    assert meta["threshold"] == 0.35 and meta["model_name"] == "unet_tiny" and meta["in_chans"] == 1
    # predict uses the stored threshold unless told otherwise
    image = tmp_path / "im.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8)).save(image)
    assert predict(result["out"], [image], tmp_path / "p")["threshold"] == 0.35
    assert predict(result["out"], [image], tmp_path / "q", threshold=0.7)["threshold"] == 0.7


def test_eval_with_onnx_equals_eval_with_torch(unet_weights, tiny_synth, tmp_path):
    onnx_file = export(unet_weights, tmp_path / "m.onnx", format="onnx")["out"]
    a = evaluate(unet_weights, tiny_synth, split="test")
    b = evaluate(onnx_file, tiny_synth, split="test")
    for k in ("iou", "niou", "pd", "fa"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def test_export_refuses_existing_file_and_bad_options(unet_weights, tmp_path):
    out = export(unet_weights, tmp_path / "m.onnx", format="onnx")["out"]
    before = open(out, "rb").read()
    with pytest.raises(CheckpointError, match="already exists"):
        export(unet_weights, out, format="onnx")
    assert open(out, "rb").read() == before
    with pytest.raises(ConfigError, match="format 'tflite'"):
        export(unet_weights, tmp_path / "m.tflite", format="tflite")
    with pytest.raises(ConfigError, match="threshold"):
        export(unet_weights, tmp_path / "n.onnx", format="onnx", threshold=1.5)
    assert not (tmp_path / "n.onnx").exists()


def test_backend_and_file_kind_must_agree(unet_weights, tmp_path):
    onnx_file = export(unet_weights, tmp_path / "m.onnx", format="onnx")["out"]
    with pytest.raises(ConfigError, match="export --checkpoint .* --format onnx"):
        Predictor.from_checkpoint(unet_weights, backend="onnx")
    with pytest.raises(ConfigError, match="is an ONNX file"):
        Predictor.from_checkpoint(onnx_file, backend="torch")


def test_corrupt_or_foreign_onnx_files_are_refused_by_name(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="bad.onnx"):
        Predictor.from_checkpoint(bad)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(CheckpointError, match="carries no 'irfoundry' metadata.*--format onnx"):
        Predictor.from_checkpoint(foreign)


def test_cli_export_onnx_then_predict_backend_onnx(unet_weights, tmp_path, capsys):
    from irfoundry.cli import main

    assert main(["export", "--checkpoint", str(unet_weights), "--out", str(tmp_path / "m.onnx")]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "onnx"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "m.onnx"), "--backend", "onnx", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "p")]) == 0
    assert "onnx" in capsys.readouterr().out
