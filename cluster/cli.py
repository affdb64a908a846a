"""Command line of the cluster stage: `faceray submit`, `faceray jobs`, `faceray demo`."""

from __future__ import annotations

import argparse

from faceray.cluster.config import DemoConfig, JobsConfig, SubmitConfig
from faceray.config import add_config_arguments, resolve_config
from faceray.console import terminal_stderr


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="run a stage as a Ray Job on a cluster (job submission API)",
        description="Example: faceray submit ingest fer --csv /data/fer2013.csv --out /data/fer48 --address http://HEAD:8265 "
        "(submit's own flags, --address --python --job-id --follow --with-requirements, may stand before or after the "
        "stage)",
    )
    submit.add_argument("stage", help="sample, ingest, inspect, train, evaluate, sweep, analyze, import-model or demo")
    submit.add_argument("arguments", nargs=argparse.REMAINDER, help="the stage's own arguments")
    submit.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(submit, SubmitConfig)
    submit.set_defaults(handler=run_submit)

    jobs = subparsers.add_parser(
        "jobs",
        help="list, show logs of, or stop Ray Jobs",
        description="List the cluster's Ray Jobs, show one job's logs, or stop one (token authentication as for "
        "`faceray submit`).",
    )
    jobs.add_argument("action", choices=("list", "logs", "stop"))
    jobs.add_argument("job_id", nargs="?", help="the job (for logs and stop)")
    add_config_arguments(jobs, JobsConfig)
    jobs.set_defaults(handler=run_jobs)

    demo = subparsers.add_parser(
        "demo",
        help="the main job on a local Ray: sample -> ingest -> train -> sweep -> serve -> client -> report",
        description="Run the whole workflow on an embedded local Ray with generated sample data: sample, ingest, "
        "train, a small sweep, the service and its client, and a report in OUT/report.md.",
    )
    demo.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(demo, DemoConfig)
    demo.set_defaults(handler=run_demo)


def run_submit(arguments: argparse.Namespace) -> int:
    from faceray.cluster.jobs import ClusterAccessError, submit
    from faceray.config import ConfigError

    try:
        stage_arguments, own = split_submit_flags([part for part in arguments.arguments if part != "--"])
    except ValueError as problem:
        raise ConfigError(str(problem)) from None
    for name, value in own.items():  # submit's flags written after the stage, as the README shows them
        if hasattr(arguments, name):  # given before the stage too (unset flags leave no attribute)
            raise ConfigError(
                f"--{name.replace('_', '-')} is given before {arguments.stage} and after it: give it once "
                "(a stage in a job runs on the cluster it was submitted to)"
            )
        setattr(arguments, name, value)
    config = resolve_config(SubmitConfig, arguments, arguments.config)
    try:
        _, status = submit(
            config.address,
            arguments.stage,
            stage_arguments,
            config.python or "auto",
            config.follow,
            config.with_requirements,
            config.job_id,
        )
    except (ValueError, ClusterAccessError) as problem:
        raise ConfigError(str(problem)) from None
    print(f"job {status}", file=terminal_stderr())
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


SUBMIT_FLAGS = {"--address": "address", "--python": "python", "--job-id": "job_id"}
SUBMIT_SWITCHES = {
    "--follow": ("follow", True),
    "--no-follow": ("follow", False),
    "--with-requirements": ("with_requirements", True),
    "--no-with-requirements": ("with_requirements", False),
}


def split_submit_flags(parts: list[str]) -> tuple[list[str], dict[str, object]]:
    """(the stage's own arguments, submit's flags found among them). `faceray submit STAGE ... --address URL` reads
    --address (and --python, --job-id, --follow, --with-requirements) as submit's, wherever it stands: a stage
    inside a job always runs on the cluster it was submitted to, so its own --address has no use there."""
    stage: list[str] = []
    own: dict[str, object] = {}
    index = 0
    while index < len(parts):
        part = parts[index]
        name, equals, value = part.partition("=")
        if name in SUBMIT_FLAGS:
            if not equals:
                if index + 1 >= len(parts):
                    raise ValueError(f"{name} needs a value")
                index += 1
                value = parts[index]
            own[SUBMIT_FLAGS[name]] = value
        elif part in SUBMIT_SWITCHES:
            key, switch = SUBMIT_SWITCHES[part]
            own[key] = switch
        else:
            stage.append(part)
        index += 1
    return stage, own


def run_jobs(arguments: argparse.Namespace) -> int:
    from faceray.cluster.jobs import ClusterAccessError
    from faceray.config import ConfigError

    try:
        return jobs_action(arguments)
    except ClusterAccessError as problem:
        raise ConfigError(str(problem)) from None


def jobs_action(arguments: argparse.Namespace) -> int:
    from faceray.cluster.jobs import job_logs, list_jobs, stop_job
    from faceray.config import ConfigError

    address = resolve_config(JobsConfig, arguments).address

    if arguments.action == "list":
        for job in list_jobs(address):
            print(f"{job['job_id']:<32} {job['status']:<10} {job['entrypoint']}")
        return 0
    if not arguments.job_id:
        raise ConfigError(f"jobs {arguments.action}: give a job id")
    if arguments.action == "logs":
        print(job_logs(address, arguments.job_id), end="")
        return 0
    return 0 if stop_job(address, arguments.job_id) else 1


def run_demo(arguments: argparse.Namespace) -> int:
    from faceray.cluster.demo import DemoFailed
    from faceray.cluster.demo import run_demo as demo
    from faceray.console import log_path

    config = resolve_config(DemoConfig, arguments, arguments.config)
    try:
        demo(config.out, config.size, config.address)
    except DemoFailed as failure:
        log = log_path()
        print(
            f'faceray demo: FAILED at step "{failure.step}": {failure}\n'
            f"  report: {config.out}/report.md" + (f"; log: {log}" if log else ""),
            file=terminal_stderr(),
        )
        return 1
    return 0
