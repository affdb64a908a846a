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
        description="Example: faceray submit ingest fer --csv /data/fer2013.csv --out /data/fer48 --address http://HEAD:8265",
    )
    submit.add_argument("stage", help="sample, ingest, inspect, train, evaluate, sweep, import-model or demo")
    submit.add_argument("arguments", nargs=argparse.REMAINDER, help="the stage's own arguments")
    submit.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(submit, SubmitConfig)
    submit.set_defaults(handler=run_submit)

    jobs = subparsers.add_parser("jobs", help="list, show logs of, or stop Ray Jobs")
    jobs.add_argument("action", choices=("list", "logs", "stop"))
    jobs.add_argument("job_id", nargs="?", help="the job (for logs and stop)")
    add_config_arguments(jobs, JobsConfig)
    jobs.set_defaults(handler=run_jobs)

    demo = subparsers.add_parser(
        "demo", help="the main job on a local Ray: sample -> ingest -> train -> sweep -> serve -> client -> report"
    )
    demo.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(demo, DemoConfig)
    demo.set_defaults(handler=run_demo)


def run_submit(arguments: argparse.Namespace) -> int:
    from faceray.cluster.jobs import ClusterAccessError, submit
    from faceray.config import ConfigError

    config = resolve_config(SubmitConfig, arguments, arguments.config)
    stage_arguments = [part for part in arguments.arguments if part != "--"]
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
