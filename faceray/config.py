"""Stage configs as frozen dataclasses: defaults in code, then a YAML file, then command-line flags.

`None` is the only "unset" value: a field that may be left to faceray (a folder not given, a size or CPU share
that fits the data or the cluster) is `X | None = None`, never an empty string, a zero or -1 standing for it.

Each field carries its one-line help in `metadata["help"]`; that text becomes `--help`.
`validate()` on a config returns every problem at once; `resolve_config` raises them in one error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from faceray.storage import Location

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """One or more invalid settings; the message names each flag."""


def option(
    default: Any, help: str, *, choices: typing.Sequence[Any] | None = None, cli: bool = True, required: bool = False
) -> Any:
    """A dataclass field with its help text (and optional choices) for the command line. `required` marks it so in
    `--help` (it may still come from `--config`; `validate()` says when it is missing)."""
    metadata = {"help": help, "choices": choices, "cli": cli, "required": required}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """The non-None type of `X | None`, else the annotation itself."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def _parse_tuple(text: str, item_type: type) -> tuple:
    return tuple(item_type(part) for part in str(text).split(",") if part.strip())


def convert_value(config_class: type, name: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the type of field `name`, raising ConfigError."""
    hints = typing.get_type_hints(config_class)
    annotation = hints[name]
    if value is None:
        return None
    target = _base_type(annotation)
    optional = target is not annotation
    if optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None  # `--flag none` (or null in YAML) unsets an optional setting
    try:
        if typing.get_origin(target) is tuple:
            item_type = typing.get_args(target)[0]
            if isinstance(value, (list, tuple)):
                return tuple(item_type(item) for item in value)
            return _parse_tuple(value, item_type)
        if target is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if target in (int, float, str):
            return target(value)
        if target is Path:
            return Path(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{flag_name(name)}: cannot read {value!r} as {getattr(target, '__name__', target)}"
        ) from None
    return value


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, skip: typing.Iterable[str] = ()) -> None:
    """Add one flag per dataclass field; unset flags stay absent so YAML values are not overridden."""
    skipped = set(skip)
    hints = typing.get_type_hints(config_class)
    required_group: argparse._ArgumentGroup | None = None
    for field in dataclasses.fields(config_class):
        if field.name in skipped or not field.metadata.get("cli", True):
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[operator]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = field.metadata.get("help", "")
        if not field.metadata.get("required") and shown not in ("", None):
            help_text += f" (default: {shown})"
        target = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": help_text}
        if target is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = field.name.upper()
            if field.metadata.get("choices"):
                kwargs["choices"] = [choice for choice in field.metadata["choices"] if choice is not None]
                kwargs.pop("metavar")
        target_group: Any = parser
        if field.metadata.get("required"):
            if required_group is None:
                required_group = parser.add_argument_group("required (as a flag or in --config)")
            target_group = required_group
        target_group.add_argument(flag_name(field.name), **kwargs)


def resolve_config(
    config_class: type[ConfigT],
    arguments: argparse.Namespace | dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    **overrides: Any,
) -> ConfigT:
    """Build a config: code defaults, then `config_file` (YAML), then `arguments`, then `overrides`.

    Raises ConfigError listing every unknown key and invalid value.
    """
    import yaml

    values: dict[str, Any] = {}
    problems: list[str] = []
    names = {field.name for field in dataclasses.fields(typing.cast(Any, config_class))}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config: no such file {str(path)!r}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config: {path} must hold a mapping of settings, not {type(loaded).__name__}")
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in names:
                problems.append(f"{path}: unknown setting {key!r}")
            else:
                values[name] = value
    given = vars(arguments) if isinstance(arguments, argparse.Namespace) else dict(arguments or {})
    values.update({name: value for name, value in given.items() if name in names})
    values.update({name: value for name, value in overrides.items() if value is not None})
    converted: dict[str, Any] = {}
    for name, value in values.items():
        try:
            converted[name] = convert_value(config_class, name, value)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    config = config_class(**converted)
    validate = getattr(config, "validate", None)
    found = validate() if validate else []
    for field in dataclasses.fields(typing.cast(Any, config_class)):
        choices = field.metadata.get("choices")
        if choices and getattr(config, field.name) is not None and getattr(config, field.name) not in choices:
            found.append(f"{flag_name(field.name)}: {getattr(config, field.name)!r} is not one of {list(choices)}")
    if found:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(found))
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (paths and tuples turned into strings and lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value

    return {field.name: plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def location(where: str | Path | None, flag: str, output: bool = False) -> Location:
    """`where` (a local path, file://, s3:// or gs:// URI) as a faceray.storage Location; ConfigError names `flag`
    (also, for an `output` in object storage, when its bucket does not exist)."""
    from faceray.storage import Location

    if not where:
        raise ConfigError(f"{flag}: a path is required")
    try:
        found = Location.of(where)
        if output:
            found.check_bucket()
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"{flag}: {error}") from None
    return found


def location_problems(**flags: str | None) -> list[str]:
    """For each flag=value given (a flag's dashes written as underscores), a problem when the value is set but is
    not a path or URI faceray can resolve (an unknown scheme, no bucket)."""
    from faceray.storage import Location

    problems = []
    for name, value in flags.items():
        if value:
            try:
                Location.of(value)
            except ValueError as error:
                problems.append(f"--{name.replace('_', '-')}: {error}")
    return problems


def output_problems(**flags: str | None) -> list[str]:
    """For each output flag=value given, a problem when a local value cannot be written: it is a file, not a
    folder, or it (or the nearest folder above it that exists) is read-only. Checked before Ray starts, so these
    mistakes are one line and exit 2 (a folder in object storage is checked when it is used)."""
    import os

    from faceray.storage import is_store_uri

    problems = []
    for name, value in flags.items():
        if not value or is_store_uri(value):
            continue
        path = Path(value).expanduser().resolve()
        flag = f"--{name.replace('_', '-')}"
        if path.exists() and not path.is_dir():
            problems.append(f"{flag}: {path} is a file, not a folder: give a folder for the outputs")
            continue
        existing = next(folder for folder in (path, *path.parents) if folder.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{flag}: {existing} is read-only here: give a folder you can write")
    return problems


def write_json(path: str | Path | Location, payload: Any) -> None:
    """Write `payload` as indented JSON, whole or not at all (faceray.storage: local or object storage)."""
    from faceray.storage import Location

    Location.of(path).write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_json_object(path: str | Path | Location, what: str) -> dict[str, Any]:
    """The JSON object in `path` (local or object storage); ValueError says when the file is missing (`what` names
    the expected file), is not JSON, or holds something other than an object."""
    from faceray.storage import Location

    location = Location.of(path)
    if not location.is_file():
        raise ValueError(f"{location.parent} is not {what} (no {location.name})")
    try:
        values = json.loads(location.read_text())
    except ValueError as error:
        raise ValueError(f"{location}: not JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{location}: expected a JSON object, found {type(values).__name__}")
    return values


def models_cache() -> Path:
    """Where `faceray fetch-weights` puts model directories by default and `FaceAnalyzer()` looks for them:
    $FACERAY_MODELS, else ~/.cache/faceray/models."""
    import os

    return Path(os.environ.get("FACERAY_MODELS") or Path.home() / ".cache" / "faceray" / "models")
