"""The command line: every command's --help, config errors naming the flag, pure cores free of Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceray.cli import build_parser, main
from faceray.config import ConfigError, resolve_config
from ingest.config import IngestConfig

COMMANDS = [["sample"], ["ingest", "imdb"], ["ingest", "fer"], ["inspect"], ["train"], ["evaluate"], ["import-model"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: faceray" in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "faceray.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ingest" in result.stdout


def test_config_errors_name_every_flag(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_config(IngestConfig, {"dataset": "imdb", "shard_rows": 0, "split": "0.5,0.1"})
    message = str(caught.value)
    assert "--out" in message and "--root" in message and "--shard-rows" in message and "--split" in message
    with pytest.raises(ConfigError, match="--size"):
        resolve_config(IngestConfig, {"size": "big"})


def test_yaml_then_flags(tmp_path):
    settings = tmp_path / "ingest.yaml"
    settings.write_text("size: 32\ncolor: rgb\nshard-rows: 10\n")
    parser = build_parser()
    arguments = parser.parse_args(["ingest", "imdb", "--root", "r", "--out", "o", "--size", "48"])
    config = resolve_config(IngestConfig, arguments, settings, dataset="imdb")
    assert (config.size, config.color, config.shard_rows) == (48, "rgb", 10)
    settings.write_text("sise: 32\n")
    with pytest.raises(ConfigError, match="unknown setting 'sise'"):
        resolve_config(IngestConfig, {}, settings)


def test_cli_reports_config_errors_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "imdb", "--out", "x"])
    assert exited.value.code == 2
    assert "--root" in capsys.readouterr().err


def test_pure_cores_do_not_import_ray():
    modules = ["ingest.images", "ingest.imdb", "ingest.fer", "ingest.splits", "ingest.sample", "ingest.chunks",
               "ingest.shards", "ingest.inspect", "faceray.labels", "faceray.config", "faceray.cli"]
    code = "import sys\n" + "".join(f"import {name}\n" for name in modules) + "print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
