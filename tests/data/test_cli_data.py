"""irfoundry.cli.data: ``data synth`` and ``data check`` through argparse, with exit codes."""

from __future__ import annotations

import argparse

import pytest

from irfoundry.cli.data import add_parser


def _parse(argv):
    parser = argparse.ArgumentParser(prog="irfoundry")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_synth_then_check(tmp_path, capsys):
    out = tmp_path / "syn"
    args = _parse(["data", "synth", "--out", str(out), "--n", "6", "--size", "40", "--seed", "2"])
    assert args.func(args) == 0
    assert "wrote 6" in capsys.readouterr().out
    args = _parse(["data", "check", str(out)])
    assert args.func(args) == 0
    assert "layout: sirst_v1" in capsys.readouterr().out
    (out / "images" / "Misc_1.png").write_bytes(b"broken")
    args = _parse(["data", "check", str(out), "--split", "trainval"])
    assert args.func(args) == 1
    assert "Misc_1.png" in capsys.readouterr().out


def test_help_has_examples(capsys):
    for sub in ("synth", "check"):
        with pytest.raises(SystemExit):
            _parse(["data", sub, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_lead_main_runs_data_commands(tmp_path, capsys):
    cli = pytest.importorskip("irfoundry.cli")
    if not hasattr(cli, "main"):
        pytest.skip("irfoundry.cli.main not available yet")
    assert cli.main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "4", "--size", "32"]) == 0
    assert cli.main(["data", "check", str(tmp_path / "missing")]) == 1
