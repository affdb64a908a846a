"""Configs of the cluster commands: `faceray submit`, `faceray jobs` and `faceray demo`."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import option

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


@dataclass(frozen=True)
class SubmitConfig:
    """Settings of `faceray submit STAGE ARGS...` (the stage and its own arguments are positional)."""

    address: str = option(DEFAULT_DASHBOARD, "the head's dashboard URL")
    python: str | None = option(
        None,
        "interpreter on the cluster that has faceray installed (default: this one for a local head, else 'python')",
    )
    follow: bool = option(True, "stream the job's logs until it ends (--no-follow: return after submitting)")
    with_requirements: bool = option(False, "have Ray install pyproject's dependencies for the job")
    job_id: str | None = option(None, "submission id (default: generated)")


@dataclass(frozen=True)
class JobsConfig:
    """Settings of `faceray jobs list|logs|stop`."""

    address: str = option(DEFAULT_DASHBOARD, "the head's dashboard URL")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `faceray demo`: the main job on a local Ray with generated data."""

    out: str = option("runs/demo", "output folder")
    size: str = option("full", "full (about 3-4 minutes on 2 cores) or small (for tests)", choices=("full", "small"))
    address: str | None = option(None, "Ray address (default: an embedded local Ray on loopback)")
