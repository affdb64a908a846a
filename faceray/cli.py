"""`faceray`: one command, a subcommand per job. Parses arguments and calls one function per stage.

A user's mistake (a bad flag, a missing file, no cluster at an address, a request the cluster cannot hold) is one
clear message and exit status 2, never a traceback; an unexpected failure is one line with its cause (exit 1),
its traceback written to a log file whose path is printed (`--verbose` prints it instead).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback
from pathlib import Path

from faceray.config import ConfigError


class FacerayParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line: the message, a "did you mean" from the subcommand's own flags or
    choices, and where the full usage is (not the 20-line usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = self.suggestion(message)
        self.exit(2, f"{self.prog}: {message}{hint}; `{self.prog} --help` for more\n")

    def suggestion(self, message: str) -> str:
        words: list[str] = []
        if "unrecognized arguments:" in message:
            words = [word.split("=")[0] for word in message.split(":", 1)[1].split() if word.startswith("-")]
            known = [option for action in self._actions for option in action.option_strings]
        elif "invalid choice:" in message:
            words = [message.split("invalid choice:", 1)[1].split("'")[1]] if "'" in message else []
            known = [choice for action in self._actions if action.choices for choice in action.choices]
        hints = []
        for word in words:
            close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
        return (" (" + "; ".join(hints) + ")") if hints else ""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("faceray")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    from faceray.cluster import cli as cluster_cli
    from faceray.ingest import cli as ingest_cli
    from faceray.serve import cli as serve_cli
    from faceray.train import cli as train_cli

    parser = FacerayParser(
        prog="faceray",
        description="Distributed data prep, training and serving for face emotion and gender classification on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"faceray {version()}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's and TensorFlow's own log lines and full tracebacks (default: written to a log file)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=FacerayParser)
    ingest_cli.register(subparsers)
    train_cli.register(subparsers)
    serve_cli.register(subparsers)
    cluster_cli.register(subparsers)
    verify = subparsers.add_parser(
        "verify",
        help="check an ingest output or a model directory against the SHA-256s recorded when it was written",
        description="Check every file of an ingest output (against OUT/manifest.json) or of a model directory "
        "(against model_card.json), local or s3:// / gs://, and print what is wrong with each and how to fix it. "
        "Exit 0: all as written; 1: damaged, missing or foreign files.",
    )
    verify.add_argument("path", help="an ingest output folder or a model directory")
    verify.set_defaults(handler=run_verify)
    _mark_leaves(parser)
    return parser


def run_verify(arguments: argparse.Namespace) -> int:
    """`faceray verify PATH`: one line per problem, or one line saying what was checked."""
    import time

    from faceray.exports import changed_export
    from faceray.model_card import CARD_FILE, ModelCard, check_model_file
    from faceray.shards import MANIFEST_FILE, check_ingest_output
    from faceray.storage import Location

    try:
        where = Location.of(arguments.path)
    except ValueError as error:
        raise ConfigError(f"PATH: {error}") from None
    started = time.perf_counter()
    if (where / MANIFEST_FILE).is_file():
        manifest, problems = check_ingest_output(where)
        if manifest.files is None:
            print(f"{where}: recorded no checksums (ingested before faceray did): nothing to verify")
            return 0
        lines = [str(problem) for problem in problems]
        checked = f"{len(manifest.files)} files, {sum(record['bytes'] for record in manifest.files.values()):,} bytes"
    elif (where / CARD_FILE).is_file():
        try:
            card = ModelCard.read(where)
        except ValueError as error:
            raise ConfigError(f"PATH: {error}") from None
        lines = []
        try:
            check_model_file(where, card)
        except ValueError as error:
            lines.append(str(error))
        warning = changed_export(where, card)
        lines += [warning] if warning else []
        checked = "the model file" + (" and its ONNX export" if (card.extra.get("exports") or {}).get("onnx") else "")
    else:
        raise ConfigError(
            f"PATH: {where} is neither an ingest output ({MANIFEST_FILE}) nor a model directory ({CARD_FILE})"
        )
    for line in lines:
        print(line)
    seconds = time.perf_counter() - started
    print(
        f"{where}: {checked} checked in {seconds:.1f} s: "
        + (f"{len(lines)} problem{'' if len(lines) == 1 else 's'}" if lines else "all as written")
    )
    return 1 if lines else 0


def _mark_leaves(parser: argparse.ArgumentParser) -> None:
    """Each subcommand's parser records itself, so an error in its arguments is reported with its own usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                child.set_defaults(leaf_parser=child)
                if not any(isinstance(inner, argparse._SubParsersAction) for inner in child._actions):
                    child.add_argument(
                        "--verbose",
                        action="store_true",
                        default=argparse.SUPPRESS,
                        help="show Ray's and TensorFlow's log lines and full tracebacks",
                    )
                _mark_leaves(child)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `faceray` console command; returns the exit status."""
    from faceray.runtime import use_loopback_environment
    from faceray.stopping import Stopped, exit_now

    use_loopback_environment()
    parser = build_parser()
    arguments, extras = parser.parse_known_args(argv)
    leaf = getattr(arguments, "leaf_parser", parser)
    if extras:
        leaf.error(f"unrecognized arguments: {' '.join(extras)}")
    verbose = bool(getattr(arguments, "verbose", False))
    try:
        if verbose:
            from faceray.console import show_library_lines

            show_library_lines()
            return int(arguments.handler(arguments) or 0)
        from faceray.console import quiet_console

        with quiet_console(*run_log_paths(arguments)):
            return int(arguments.handler(arguments) or 0)
    except ConfigError as error:
        parser.exit(2, f"faceray {arguments.command}: {error}\n")
    except Stopped as stopped:
        print(f"faceray {arguments.command}: {stopped.line}", file=sys.stderr, flush=True)
        exit_now(stopped.code)  # what is kept is saved: Ray's processes end now, not in Python's slow shutdown
        return stopped.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if verbose:
            raise
        from faceray.console import last_log_path
        from faceray.errors import explain

        log = write_error_log(error, last_log_path() or run_log_paths(arguments)[0])
        out = getattr(arguments, "out", None)
        print(
            f"faceray {arguments.command}: failed: {explain(error, str(out) if out else None)}\n"
            f"  the traceback and Ray's and TensorFlow's lines are in {log}; --verbose shows them here",
            file=sys.stderr,
        )
        return 1


def run_log_paths(arguments: argparse.Namespace) -> tuple[Path, Path | None]:
    """(where the log is written while the command runs, where it moves at the end): ~/.cache/faceray/logs/
    <command>-<pid>.log, then OUT/faceray.log for a run with a local output folder (FACERAY_LOG_DIR overrides the
    first; a log of a run whose output is in object storage stays there)."""
    import os

    from faceray.storage import is_store_uri

    folder = Path(os.environ.get("FACERAY_LOG_DIR") or Path.home() / ".cache" / "faceray" / "logs")
    out = getattr(arguments, "out", None)
    run_folder = (
        Path(out) / "faceray.log"
        if out and not is_store_uri(out) and arguments.command not in ("sample", "import-model", "fetch-weights")
        else None
    )
    return folder / f"{arguments.command}-{os.getpid()}.log", run_folder


def write_error_log(error: BaseException, path: Path) -> Path:
    """Append the traceback of `error` to the run log `path`; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    return path


if __name__ == "__main__":
    sys.exit(main())
