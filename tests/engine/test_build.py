"""Options are checked at the edge: every part of a run is built before the run folder is written, so a bad
value leaves nothing behind and the corrected command simply works."""

from __future__ import annotations

import yaml
from conftest import tiny_config

from irfoundry.cli import main


def _cfg_file(tmp_path, tiny_synth, **method):
    cfg = tiny_config(tiny_synth, tmp_path / "runs", "run", max_epochs=1)
    cfg["method"].update(method)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_typo_in_a_method_option_fails_before_any_file_and_the_fix_just_works(tiny_synth, tmp_path, capsys):
    cfg = _cfg_file(tmp_path, tiny_synth)
    run = tmp_path / "runs" / "run"
    assert main(["train", str(cfg), "--set", "method.options.warm_epoch=3"]) == 1
    err = capsys.readouterr().err
    assert "method.options.warm_epoch" in err and "Did you mean method.options.warm_epochs" in err
    assert not run.exists()
    assert main(["train", str(cfg), "--set", "method.options.warm_epochs=-1"]) == 0  # the corrected command
    assert (run / "last.safetensors").is_file() and (run / "config.yaml").is_file()


def test_values_only_the_built_parts_can_check_fail_before_any_file(tiny_synth, tmp_path, capsys):
    cfg = _cfg_file(tmp_path, tiny_synth)
    run = tmp_path / "runs" / "run"
    # the crop must be a multiple of the model's input multiple: known once the model is built
    assert main(["train", str(cfg), "--set", "data.crop_size=48"]) == 1
    assert "data.crop_size must be a multiple of 32 (the input multiple of model 'unet_tiny')" in capsys.readouterr().err
    # warm_epochs on a host without a warm-up output: known once host and method are built
    assert main(["train", str(cfg), "--set", "method.options.warm_epochs=2"]) == 1
    assert "declares no WARMUP_OUTPUT" in capsys.readouterr().err
    # point labels without a points file; a points file that does not exist
    assert main(["train", str(cfg), "--set", "data.labels=points"]) == 1
    assert "data.points" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "data.labels=points", "--set", f"data.points={tmp_path / 'no.csv'}"]) == 1
    assert "no.csv does not exist" in capsys.readouterr().err
    assert not run.exists()


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(tiny_synth, tmp_path, capsys):
    cfg = _cfg_file(tmp_path, tiny_synth)
    assert main(["train", str(cfg), "--set", "optim.lr=1e30", "--set", "method.loss=bce"]) == 1
    assert "became" in capsys.readouterr().err  # the NaN guard names the step and the images
    assert not (tmp_path / "runs" / "run").exists()
    assert main(["train", str(cfg)]) == 0  # the same command, fixed, is not refused as 'already exists'


def test_trainer_settings_and_names_that_only_lightning_or_the_registry_know_fail_before_any_file(
        tiny_synth, tmp_path, capsys):
    cfg = _cfg_file(tmp_path, tiny_synth)
    run = tmp_path / "runs" / "run"
    assert main(["train", str(cfg), "--set", "trainer.precision=bf17"]) == 1
    assert "Lightning refused the trainer settings" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "trainer.monitor=val/IoU"]) == 1
    assert "Did you mean 'val/iou'" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "model.name=acmm"]) == 1
    assert "model.name: unknown model 'acmm'" in capsys.readouterr().err
    assert not run.exists()
