"""Command line of the cluster stage: `faceray submit`, `faceray jobs`, `faceray demo`."""

from __future__ import annotations

import argparse

from faceray.console import terminal_stderr

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="run a stage as a Ray Job on a cluster (job submission API)",
        description="Example: faceray submit ingest fer --csv /data/fer2013.csv --out /data/fer48 --address http://HEAD:8265",
    )
    submit.add_argument("stage", help="sample, ingest, inspect, train, evaluate, sweep, import-model or demo")
    submit.add_argument("arguments", nargs=argparse.REMAINDER, help="the stage's own arguments")
    submit.add_argument(
        "--address", default=DEFAULT_DASHBOARD, help=f"the head's dashboard URL (default: {DEFAULT_DASHBOARD})"
    )
    submit.add_argument(
        "--python",
        default="auto",
        help="interpreter on the cluster that has faceray installed "
        "(default: auto = this one for a local head, else 'python')",
    )
    submit.add_argument("--no-follow", dest="follow", action="store_false", help="return after submitting")
    submit.add_argument(
        "--with-requirements", action="store_true", help="have Ray install pyproject's dependencies for the job"
    )
    submit.add_argument("--job-id", default=None, help="submission id (default: generated)")
    submit.set_defaults(handler=run_submit)

    jobs = subparsers.add_parser("jobs", help="list, show logs of, or stop Ray Jobs")
    jobs.add_argument("action", choices=("list", "logs", "stop"))
    jobs.add_argument("job_id", nargs="?", help="the job (for logs and stop)")
    jobs.add_argument(
        "--address", default=DEFAULT_DASHBOARD, help=f"the head's dashboard URL (default: {DEFAULT_DASHBOARD})"
    )
    jobs.set_defaults(handler=run_jobs)

    demo = subparsers.add_parser(
        "demo", help="the main job on a local Ray: sample -> ingest -> train -> sweep -> serve -> client -> report"
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument(
        "--size",
        choices=("full", "small"),
        default="full",
        help="full (about 3-4 minutes on 2 cores) or small (for tests)",
    )
    demo.add_argument("--address", default="", help="Ray address (default: an embedded local Ray on loopback)")
    demo.set_defaults(handler=run_demo)


def run_submit(arguments: argparse.Namespace) -> int:
    from cluster.jobs import ClusterAccessError, submit
    from faceray.config import ConfigError

    stage_arguments = [part for part in arguments.arguments if part != "--"]
    try:
        _, status = submit(
            arguments.address,
            arguments.stage,
            stage_arguments,
            arguments.python,
            arguments.follow,
            arguments.with_requirements,
            arguments.job_id,
        )
    except (ValueError, ClusterAccessError) as problem:
        raise ConfigError(str(problem)) from None
    print(f"job {status}", file=terminal_stderr())
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


def run_jobs(arguments: argparse.Namespace) -> int:
    from cluster.jobs import ClusterAccessError
    from faceray.config import ConfigError

    try:
        return jobs_action(arguments)
    except ClusterAccessError as problem:
        raise ConfigError(str(problem)) from None


def jobs_action(arguments: argparse.Namespace) -> int:
    from cluster.jobs import job_logs, list_jobs, stop_job
    from faceray.config import ConfigError

    if arguments.action == "list":
        for job in list_jobs(arguments.address):
            print(f"{job['job_id']:<32} {job['status']:<10} {job['entrypoint']}")
        return 0
    if not arguments.job_id:
        raise ConfigError(f"jobs {arguments.action}: give a job id")
    if arguments.action == "logs":
        print(job_logs(arguments.address, arguments.job_id), end="")
        return 0
    return 0 if stop_job(arguments.address, arguments.job_id) else 1


def run_demo(arguments: argparse.Namespace) -> int:
    from cluster.demo import DemoFailed
    from cluster.demo import run_demo as demo
    from faceray.console import log_path

    try:
        demo(arguments.out, arguments.size, arguments.address or None)
    except DemoFailed as failure:
        log = log_path()
        print(
            f'faceray demo: FAILED at step "{failure.step}": {failure}\n'
            f"  report: {arguments.out}/report.md" + (f"; log: {log}" if log else ""),
            file=terminal_stderr(),
        )
        return 1
    return 0
