"""Search spaces in YAML (grid values and random distributions), turned into Ray Tune spaces.

Each key is a TrainConfig field. A value is one of:
  a scalar                         fixed for every trial
  a list                           grid: every value is tried (lists multiply)
  {loguniform: [low, high]}        random, log scale;  also uniform, randint, quniform: [low, high, q],
  {choice: [a, b, ...]}            random pick (not a grid)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from faceray.config import ConfigError
from faceray.train.config import TrainConfig

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "quniform", "choice")
FIXED_BY_SWEEP = {"data", "task", "out", "address", "final"}


def read_space(path: str | Path) -> dict[str, Any]:
    """Load and check a search-space YAML file; raises ConfigError listing every problem."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--space: no such file {str(file)!r}")
    space = yaml.safe_load(file.read_text()) or {}
    if not isinstance(space, dict):
        raise ConfigError(f"--space: {file} must hold a mapping of TrainConfig fields")
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    problems = []
    for key, value in space.items():
        name = str(key).replace("-", "_")
        if name not in names:
            problems.append(f"{file}: {key!r} is not a training setting")
        elif name in FIXED_BY_SWEEP:
            problems.append(f"{file}: {key!r} is set by `faceray sweep` itself")
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
                problems.append(f"{file}: {key!r} must be a value, a list (grid) or one of {DISTRIBUTIONS}")
    if problems:
        raise ConfigError("invalid search space:\n  " + "\n  ".join(problems))
    return {str(key).replace("-", "_"): value for key, value in space.items()}


def to_tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """The Ray Tune param_space for a checked space."""
    from ray import tune

    converted: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, list):
            converted[name] = tune.grid_search(value)
        elif isinstance(value, dict):
            kind, arguments = next(iter(value.items()))
            converted[name] = tune.choice(arguments) if kind == "choice" else getattr(tune, kind)(*arguments)
        else:
            converted[name] = value
    return converted


def grid_size(space: dict[str, Any]) -> int:
    size = 1
    for value in space.values():
        if isinstance(value, list):
            size *= len(value)
    return size
