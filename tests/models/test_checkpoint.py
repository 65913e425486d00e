"""Reference-checkpoint importer and our safetensors + JSON weights (generic parts)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from irfoundry.errors import CheckpointError
from irfoundry.models import create_model
from irfoundry.models.checkpoint import (
    import_reference_checkpoint,
    load_weights,
    read_torch_checkpoint,
    save_weights,
    strip_prefixes,
)


def _same_outputs(a, b, shape=(1, 1, 64, 64)):
    a.eval(), b.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("prefix", ["", "module.", "model.", "module.model."])
def test_import_strips_wrapper_prefixes(tmp_path, prefix):
    torch.manual_seed(1)
    ref = create_model("unet_tiny")
    ckpt = {"epoch": 400, "state_dict": {prefix + k: v for k, v in ref.state_dict().items()}, "total_loss": [0.1]}
    path = tmp_path / "UNet_400.pth.tar"
    torch.save(ckpt, path)
    ours = import_reference_checkpoint(path, "unet_tiny")
    assert _same_outputs(ref, ours)


def test_bare_state_dict_is_accepted(tmp_path):
    ref = create_model("unet_tiny")
    torch.save(ref.state_dict(), tmp_path / "bare.pth")
    assert set(read_torch_checkpoint(tmp_path / "bare.pth")) == set(ref.state_dict())


def test_strip_prefixes_only_when_shared():
    s = {"model.a": 1, "b": 2}
    assert strip_prefixes(s) == s


def test_checkpoint_of_another_architecture_names_keys(tmp_path):
    other = create_model("unet_tiny", base=4)
    path = tmp_path / "other.pth.tar"
    torch.save({"state_dict": other.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"other\.pth\.tar does not fit model 'unet_tiny'.*shape mismatches"):
        import_reference_checkpoint(path, "unet_tiny")
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="missing keys.*unexpected keys: conv.weight"):
        import_reference_checkpoint(path, "unet_tiny")


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "corrupt.pth.tar"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="corrupt.pth.tar"):
        read_torch_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_torch_checkpoint(tmp_path / "nope.pth")


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Evil()}, path)
    with pytest.raises(CheckpointError, match="does not load"):
        read_torch_checkpoint(path)


def test_save_and_load_weights_round_trip(tmp_path):
    m = create_model("unet_tiny", base=4)
    out = save_weights(m, tmp_path / "w" / "tiny", extra={"note": "x"})
    assert out.suffix == ".safetensors" and out.with_suffix(".json").is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model_name"] == "unet_tiny" and meta["model_kwargs"]["base"] == 4 and meta["note"] == "x"
    again = load_weights(out)
    assert _same_outputs(m, again)
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # readable by colleagues (safetensors alone: 0600)
    # metadata embedded in the safetensors header is the fallback when the sidecar is gone
    out.with_suffix(".json").unlink()
    assert _same_outputs(m, load_weights(out))


def test_corrupt_weights_file(tmp_path):
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="w.safetensors"):
        load_weights(p)
