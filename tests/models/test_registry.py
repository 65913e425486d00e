from __future__ import annotations

import pytest
import torch

from irfoundry.errors import ModelError
from irfoundry.models import create_model, list_models, model_entry, register_model
from irfoundry.models.complexity import complexity


def test_unknown_model_name_suggests_close_match():
    with pytest.raises(ModelError, match="unknown model 'unet_tiy'.*unet_tiny"):
        create_model("unet_tiy")


def test_duplicate_registration_raises():
    with pytest.raises(ModelError, match="already registered"):

        @register_model("unet_tiny")
        def again(*, in_chans=1):  # pragma: no cover
            raise AssertionError


def test_bad_builder_argument_is_model_error():
    with pytest.raises(ModelError, match="bad arguments for model 'unet_tiny'"):
        create_model("unet_tiny", no_such_option=3)


def test_create_model_records_name_and_kwargs():
    m = create_model("UNET_TINY", base=4)
    assert m.model_name == "unet_tiny" and m.model_kwargs == {"in_chans": 1, "base": 4}
    assert model_entry("unet_tiny").builder.__name__ == "unet_tiny"
    assert list_models() == sorted(list_models())


def test_input_not_multiple_of_32_is_a_clear_error():
    with pytest.raises(ModelError, match="not a multiple of 32"):
        create_model("unet_tiny")(torch.zeros(1, 1, 40, 64))


def test_complexity_counts_conv_macs():
    # one 3x3 conv 1->8 at 32x32: 9 * 8 * 32 * 32 MACs
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1, bias=False))
    c = complexity(conv, (1, 1, 32, 32))
    assert c == {"params": 72, "macs": 9 * 8 * 32 * 32}
