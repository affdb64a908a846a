"""faceray.stopping in a child process: a stop line and 130/143 instead of a stack dump, a watchdog for a block
that does not end, and a second signal that does not wait."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from faceray.cli import main
    from faceray.stopping import graceful_stop

    mode = sys.argv[1]
    def work(arguments):
        interrupt = mode == "interrupt"
        with graceful_stop("the work", "finished parts are kept", grace_s=2, interrupt=interrupt) as stop:
            print("ready", flush=True)
            if mode == "interrupt":
                time.sleep(30)
            elif mode == "cooperative":
                while not stop.requested:
                    time.sleep(0.05)
                raise stop.stopped("at part 3")
            else:  # stuck: never looks at the request
                time.sleep(30)
        return 0

    import argparse
    import faceray.cli as cli
    real = cli.build_parser
    def parser():  # `faceray verify .` runs `work` instead: the CLI's own handling of a stop is what is tested
        built = real()
        for action in built._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.choices["verify"].set_defaults(handler=work)
        return built
    cli.build_parser = parser
    sys.exit(main(["verify", "."]))
    """
)


def run_child(mode: str, signals: list[int]) -> tuple[int, str, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for number in signals:
        process.send_signal(number)
        time.sleep(0.3)
    _, errors = process.communicate(timeout=30)
    return process.returncode, errors, time.monotonic() - started


def test_sigint_stops_with_one_line_and_130():
    code, errors, _ = run_child("interrupt", [signal.SIGINT])
    assert code == 130
    assert "faceray verify: stopped the work (finished parts are kept): run the same command to resume" in errors
    assert "Traceback" not in errors


def test_sigterm_lets_the_work_end_itself_then_143():
    code, errors, seconds = run_child("cooperative", [signal.SIGTERM])
    assert code == 143 and seconds < 2
    assert errors.strip().endswith("faceray verify: stopped at part 3: run the same command to resume")


@pytest.mark.parametrize(("signals", "most_s"), [([signal.SIGTERM], 6.0), ([signal.SIGTERM, signal.SIGTERM], 1.5)])
def test_a_block_that_does_not_end_is_ended_by_the_watchdog_or_a_second_signal(signals, most_s):
    code, errors, seconds = run_child("stuck", signals)
    assert code == 143 and seconds < most_s
    assert "run the same command to resume" in errors and "Traceback" not in errors
