"""`faceray`: one command, a subcommand per job. Parses arguments and calls one function per stage."""

from __future__ import annotations

import argparse
import sys

from faceray.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from cluster import cli as cluster_cli
    from ingest import cli as ingest_cli
    from serve import cli as serve_cli
    from train import cli as train_cli

    parser = argparse.ArgumentParser(
        prog="faceray",
        description="Distributed data prep, training and serving for face emotion and gender classification on Ray.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ingest_cli.register(subparsers)
    train_cli.register(subparsers)
    serve_cli.register(subparsers)
    cluster_cli.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `faceray` console command; returns the exit status."""
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.handler(arguments) or 0)
    except ConfigError as error:
        parser.exit(2, f"faceray {arguments.command}: {error}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
