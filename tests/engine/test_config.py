from __future__ import annotations

import pytest

from irfoundry.engine.config import load_config, parse_override
from irfoundry.errors import ConfigError


def test_overrides_are_typed(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {root: /d}\noptim: {lr: 5e-4}\ntrainer: {max_epochs: 400}\n")
    cfg = load_config(p, ["optim.lr=1e-3", "trainer.max_epochs=50", "model.kwargs={base: 4}", "data.val_split=null"])
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.trainer.max_epochs == 50 and cfg.model.kwargs == {"base": 4} and cfg.data.val_split is None
    assert cfg.model.init_prob is None and load_config(p, ["model.init_prob=1e-2"]).model.init_prob == 0.01
    assert cfg.model.init_weight_std == 0.01 and load_config(p, ["model.init_weight_std=null"]).model.init_weight_std is None
    # YAML 1.1 reads 5e-4 as a string; the typed config turns it into a float
    assert load_config(p).optim.lr == pytest.approx(5e-4)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown config key optim.lrr. Did you mean optim.lr"),
        ("optimm.lr=1", "unknown config section 'optimm'"),
        ("optim.optimizer=rmsprop", "optim.optimizer = 'rmsprop' is not allowed; choose one of: adam, adamw, sgd"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be an integer"),
        ("data.crop_size=-32", "data.crop_size must be a positive number"),
        ("method.loss=iou", "method.loss = 'iou' is not allowed"),
        ("trainer.batch_size=0", "trainer.batch_size must be a positive number"),
        ("model.init_prob=1.5", "model.init_prob must be null or a probability"),
        ("model.init_weight_std=-0.1", "model.init_weight_std must be null or a number >= 0"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
