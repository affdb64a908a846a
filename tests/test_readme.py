"""The README and the reference in docs/ say what `--help` says: every `faceray …` command they show parses flag by
flag, every `a|b|c` they list is the flag's choices, and every default they state is the flag's default."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from faceray.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def documentation() -> str:
    """The README and every page of the reference (docs/*.md), one after the other."""
    return "\n\n".join(page.read_text() for page in PAGES)


def leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    """'train' -> its parser, 'ingest imdb' -> that one, … (every command a user can type)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{prefix} {name}".strip())
                return
        found[prefix] = parser

    walk(build_parser(), "")
    return found


def readme_commands() -> list[str]:
    """Each `faceray …` command of the README and docs/: code-block lines (continuations joined) and inline code
    spans."""
    text = documentation()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("faceray "):
                commands.append(line)
    commands += [span for span in re.findall(r"`(faceray [^`]+)`", text)]
    return commands


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_readme_command_matches_its_parser():
    parsers = leaf_parsers()
    commands = readme_commands()
    assert len(commands) > 20
    problems = []
    for command in commands:
        words = shlex.split(command.replace("[", " ").replace("]", " ").replace("\\|", "|").replace("…", " "))[1:]
        if words and words[0].startswith("--"):  # faceray's own flags
            assert words[0] in options(build_parser()), command
            continue
        name = next(
            (
                candidate
                for candidate in sorted(parsers, key=len, reverse=True)
                if words[: len(candidate.split())] == candidate.split()
            ),
            None,
        )
        if name is None:
            if not any(candidate.split()[: len(words)] == words for candidate in parsers):  # a group: `faceray ingest`
                problems.append(f"{command!r}: no such command")
            continue
        known = options(parsers[name])
        if name == "submit" and len(words) > 1 and words[1] in parsers:  # `submit STAGE …`: the stage's flags too
            known = {**options(parsers[words[1]]), **known}
        for index, word in enumerate(words):
            if not word.startswith("--"):
                continue
            flag = word.split("=")[0]
            if flag not in known:
                problems.append(f"{command!r}: faceray {name} has no {flag}")
                continue
            following = words[index + 1] if index + 1 < len(words) else ""
            choices = known[flag].choices
            if choices and "|" in following:
                missing = [value for value in following.split("|") if value not in choices]
                if missing:
                    problems.append(f"{command!r}: {flag} lists {missing}, not among {list(choices)}")
            elif choices and following and not following.startswith("-") and following.upper() != following:
                if following not in choices:
                    problems.append(f"{command!r}: {flag} {following} is not among {list(choices)}")
    assert not problems, "\n".join(problems)


DEFAULT_PATTERN = re.compile(r"`(--[a-z][\w-]*)`[^`\n]{0,40}?\bdefault:? `?([\w.]+)`?")


@pytest.mark.parametrize("flag_and_value", DEFAULT_PATTERN.findall(documentation()), ids=lambda item: item[0])
def test_stated_defaults_are_the_defaults(flag_and_value):
    flag, stated = flag_and_value
    defaults = []
    for parser in leaf_parsers().values():
        action = options(parser).get(flag)
        if action is not None:
            help_text = action.help or ""
            shown = re.search(r"\(default: ([^)]*)\)", help_text)
            defaults.append(shown.group(1) if shown else str(action.default))
    assert defaults, f"no command has {flag}"
    assert any(_same(stated, value) for value in defaults), (
        f"README says {flag} defaults to {stated}; --help says {defaults}"
    )


def _same(stated: str, actual: str) -> bool:
    try:
        return float(stated) == float(actual)
    except ValueError:
        return stated == actual
