"""The command line: every command's --help, config errors naming the flag, pure cores free of Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceray.cli import build_parser, main
from faceray.config import ConfigError, resolve_config
from faceray.ingest.config import IngestConfig

COMMANDS = [
    ["sample"],
    ["ingest", "imdb"],
    ["ingest", "fer"],
    ["inspect"],
    ["train"],
    ["evaluate"],
    ["import-model"],
    ["verify"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: faceray" in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "faceray.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "ingest" in result.stdout


def test_config_errors_name_every_flag(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_config(IngestConfig, {"dataset": "imdb", "shard_rows": 0, "split": "0.5,0.1"})
    message = str(caught.value)
    assert "--out" in message and "--root" in message and "--shard-rows" in message and "--split" in message
    with pytest.raises(ConfigError, match="--size"):
        resolve_config(IngestConfig, {"size": "big"})


def test_yaml_then_flags(tmp_path):
    settings = tmp_path / "faceray.ingest.yaml"
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
    modules = [
        "faceray.ingest.images",
        "faceray.ingest.imdb",
        "faceray.ingest.fer",
        "faceray.ingest.splits",
        "faceray.ingest.sample",
        "faceray.ingest.chunks",
        "faceray.ingest.sources.imdb_wiki",
        "faceray.ingest.sources.fer2013",
        "faceray.ingest.inspect",
        "faceray.shards",
        "faceray.integrity",
        "faceray.errors",
        "faceray.serve.inbox",
        "faceray.faces",
        "faceray.image_bytes",
        "faceray.model_card",
        "faceray.labels",
        "faceray.config",
        "faceray.cli",
        "faceray.resources",
        "faceray.console",
        "faceray.train.feed",
        "faceray.train.weights",
    ]
    code = "import sys\n" + "".join(f"import {name}\n" for name in modules) + "print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_version_and_did_you_mean(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("faceray ")
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", "x", "--epocs", "3"])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.count("\n") == 1  # one line, no usage block
    assert (
        error
        == "faceray train: unrecognized arguments: --epocs 3 (did you mean --epochs?); `faceray train --help` for more\n"
    )
    with pytest.raises(SystemExit):
        main(["trian"])
    assert "did you mean train?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ingest", "fr"])
    assert "did you mean fer?" in capsys.readouterr().err


def test_required_settings_are_shown_as_required(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    shown = capsys.readouterr().out
    required = shown.split("required (as a flag or in --config):", 1)[1]
    assert "--data" in required and "--space" in required and "--epochs" not in required


def test_an_unexpected_failure_is_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    """Not a user's mistake: exit 1, the cause in one line, the traceback in the run log (not on the console)."""
    from faceray.ingest import cli as ingest_cli

    def broken(arguments):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(ingest_cli, "run_sample", broken)
    monkeypatch.setenv("FACERAY_LOG_DIR", str(tmp_path))
    assert main(["sample", "--out", str(tmp_path / "s")]) == 1
    error = capsys.readouterr().err
    assert "failed: RuntimeError: disk on fire" in error and "second line" not in error and "Traceback" not in error
    assert "Traceback" in next(tmp_path.glob("sample-*.log")).read_text()
    assert not (tmp_path / "s").exists()  # no output folder made just for a log


def test_every_command_is_built_from_its_config_with_none_as_unset(tmp_path):
    import argparse

    from faceray.cli import build_parser
    from faceray.config import resolve_config
    from faceray.serve.config import ClientConfig
    from faceray.train.config import TrainConfig

    parser = build_parser()
    imdb = parser.parse_args(["ingest", "imdb", "--out", "o", "--root", "r", "--min-face-score", "none"])
    assert imdb.min_face_score == "none" and not hasattr(imdb, "csv")  # FER's flag is not IMDB's, and the reverse
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "fer", "--out", "o", "--root", "r"])
    from faceray.ingest.config import IngestConfig

    assert resolve_config(IngestConfig, imdb, dataset="imdb").min_face_score is None
    client = parser.parse_args(["client", "--no-realtime", "--give-up-s", "3", "--max-frames", "5"])
    config = resolve_config(ClientConfig, client)
    assert config.realtime is False and config.give_up_s == 3.0 and config.max_frames == 5 and config.output is None
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("data: d\ncrop_margin: null\nfinal_epochs: 3\n")
    train = resolve_config(TrainConfig, argparse.Namespace(task="gender"), yaml_file)
    assert train.crop_margin is None and train.final_epochs == 3 and train.task == "gender"
    assert resolve_config(TrainConfig, {"data": "d"}).task is None  # unset: the task recorded in the data


@pytest.mark.parametrize(
    "command",
    [
        ["ingest", "fer", "--csv", "{data}"],
        ["train", "--data", "{data}", "--task", "emotion"],
        ["sweep", "--data", "{data}", "--space", "train/spaces/report.yaml"],
        ["sample"],
        ["analyze", "{data}"],
    ],
    ids=lambda command: command[0],
)
def test_an_output_that_is_a_file_or_read_only_is_refused_before_ray_starts(command, tmp_path, capsys):
    """User mistakes on --out are one line and exit 2, at once (they took 13-18 s and exit 1 when found by Ray)."""
    import os
    import time

    data = tmp_path / "fer2013.csv"
    data.write_text("emotion,pixels,Usage\n")
    arguments = [part.format(data=data) for part in command]
    cases = [(tmp_path / "a-file", "is a file, not a folder")]
    if os.geteuid() != 0:  # root writes through permission bits, so only another user sees a read-only folder
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
        cases.append((read_only / "out", "is read-only here"))
    (tmp_path / "a-file").write_text("not a folder")
    for out, words in cases:
        began = time.monotonic()
        with pytest.raises(SystemExit) as exited:
            main([*arguments, "--out", str(out)])
        assert exited.value.code == 2 and time.monotonic() - began < 2
        error = capsys.readouterr().err
        assert f"--out: {out.parent if 'read-only' in words else out}" in error and words in error, error


def every_parser(parser=None, name: str = "faceray"):
    """(name, parser) of faceray's parser and every subcommand's, groups included ("faceray ingest")."""
    import argparse

    from faceray.cli import build_parser

    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from every_parser(child, f"{name} {child_name}")
    yield name, parser


def test_every_command_has_a_description():
    missing = [name for name, parser in every_parser() if not parser.description]
    assert not missing, missing


def test_each_setting_has_one_flag():
    """One name per flag: no command has two spellings of one setting (the client had --fast and --give-up-after)."""
    problems = []
    for name, parser in every_parser():
        seen: dict[str, str] = {}
        for action in parser._actions:
            spellings = [option for option in action.option_strings if not option.startswith("--no-")]
            if action.dest in seen and spellings:
                problems.append(f"{name}: {seen[action.dest]} and {spellings[0]} set {action.dest}")
            elif spellings:
                seen[action.dest] = spellings[0]
    assert not problems, problems
