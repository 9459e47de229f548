"""The tripwire command: help for each subcommand, tokens, init and config check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tripwire.app.cli import main
from tripwire.camera_config import load_config
from tripwire.starter import read_tokens
from tripwire.tokens import verify

SUBCOMMANDS = [["gateway"], ["motion"], ["init"], ["token", "new"], ["config", "check"]]


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(cmd: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tripwire.app.cli", *cmd, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: tripwire")


def test_token_new_prints_a_pasteable_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "cam-7"]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[1].strip()
    line = next(x for x in out if "token_hash" in x)
    assert verify(token, line.split('"')[1])


def test_token_new_refuses_bad_camera_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "Bad.Id"]) == 2
    assert "camera id" in capsys.readouterr().err


def test_init_then_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    assert main(["init", "--cameras", "3"]) == 0
    cfg = load_config(tmp_path / "cameras.yaml")
    tokens = read_tokens(tmp_path)
    assert [c.id for c in cfg.cameras] == ["cam-1", "cam-2", "cam-3"]
    assert all(verify(tokens[c.id], c.token_hash) for c in cfg.cameras)
    assert (tmp_path / "camera-tokens.env").stat().st_mode & 0o077 == 0
    assert main(["init"]) == 2  # refuses to overwrite
    assert main(["config", "check", str(tmp_path / "cameras.yaml")]) == 0
    assert "3 camera(s)" in capsys.readouterr().out


def test_config_check_reports_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("cameras:\n  - id: cam-1\n    token_hash: x\n    motoin: {}\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cameras[0].motoin" in err and "cameras[0].token_hash" in err
