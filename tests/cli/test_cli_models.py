from __future__ import annotations

import json

import pytest
import torch

from irfoundry.cli import main
from irfoundry.models import create_model, list_models
from irfoundry.models.checkpoint import load_weights


def test_models_lists_every_host_with_params(capsys):
    assert main(["models", "--json", "--no-macs"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    acm = next(r for r in rows if r["name"] == "acm")
    assert abs(acm["params"] - acm["published_params"]) / acm["published_params"] < 0.03


def test_models_import_writes_safetensors(tmp_path, capsys):
    ref = create_model("acm")
    src = tmp_path / "ACM_400.pth.tar"
    torch.save({"epoch": 400, "state_dict": {"model." + k: v for k, v in ref.state_dict().items()}}, src)
    out = tmp_path / "acm.safetensors"
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    again = load_weights(out).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), ref.eval()(x))


def test_models_import_wrong_architecture_exit_1(tmp_path, capsys):
    src = tmp_path / "dna.pth.tar"
    torch.save({"state_dict": create_model("unet_tiny").state_dict()}, src)
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "does not fit model 'acm'" in err and "dna.pth.tar" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_unknown_model_exit_1(tmp_path, capsys):
    src = tmp_path / "a.pth"
    torch.save({"w": torch.zeros(1)}, src)
    assert main(["models", "import", str(src), "--model", "acn", "--out", str(tmp_path / "x")]) == 1
    assert "unknown model 'acn'" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["models", "import"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2


@pytest.mark.parametrize("cmd", [[], ["models"], ["models", "import"], ["data"], ["train"], ["eval"], ["predict"],
                                 ["quickstart"]])
def test_help_has_examples(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


def test_normalisation_travels_with_imported_weights(tiny_synth, tmp_path, capsys):
    """Weights imported without statistics are refused by eval / predict with the fix named; --norm at import
    (a preset or MEAN,STD on 0-255 grey) or at eval makes them run, and the source is recorded."""
    ref = create_model("acm")
    src = tmp_path / "ACM_400.pth.tar"
    torch.save({"state_dict": {"model." + k: v for k, v in ref.state_dict().items()}}, src)
    bare, normed = tmp_path / "bare.safetensors", tmp_path / "normed.safetensors"
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(bare)]) == 0
    assert "no --norm given" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(bare), "--data", str(tiny_synth)]) == 1
    assert "carries no normalisation statistics" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(bare), str(tiny_synth / "images"), "--out", str(tmp_path / "p")]) == 1
    assert "--norm MEAN,STD" in capsys.readouterr().err
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(normed), "--norm", "sirst3"]) == 0
    meta = json.loads(normed.with_suffix(".json").read_text())
    assert meta["norm"] == {"mean": 95.010 / 255, "std": 41.511 / 255} and "LESPS" in meta["norm_source"]
    assert main(["eval", "--checkpoint", str(normed), "--data", str(tiny_synth), "--json", "--out",
                 str(tmp_path / "e")]) == 0
    assert "sirst3" in json.loads((tmp_path / "e" / "metrics.json").read_text())["norm_source"]
    assert main(["eval", "--checkpoint", str(bare), "--data", str(tiny_synth), "--norm", "101.06,34.62",
                 "--out", str(tmp_path / "e2")]) == 0
    assert "given: 0-255 101.06/34.62" in json.loads((tmp_path / "e2" / "metrics.json").read_text())["norm_source"]
    capsys.readouterr()
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(tmp_path / "x"), "--norm", "sirst"]) == 1
    assert "neither MEAN,STD" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()


def test_a_checkpoint_with_python_objects_is_refused_without_unsafe_advice(tmp_path, capsys):
    src = tmp_path / "obj.pth"
    torch.save({"state_dict": {}, "args": argparse_namespace()}, src)
    assert main(["models", "import", str(src), "--model", "acm", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "beyond tensors and plain containers" in err and "weights_only=False" not in err


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=1e-3)
