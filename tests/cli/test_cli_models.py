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
