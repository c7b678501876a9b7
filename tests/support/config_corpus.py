"""The corpus of loop files in ``tests/fixtures/configs``, and what each must produce.

``valid/*.yml`` must load without a problem. Each ``invalid/*.yml`` opens with
comment lines that say what the validator must report::

    # expect: 7:3 unknown key `max_iteration`    (line:col, then a fragment)
    # expect: 7:3 did you mean `max_iterations`? (the fragment may be in the hint)
    # expect: 6 not valid UTF-8                   (a line without a column)
    # expect: - loop name                         (a problem about the whole file)
    # schema: n/a                                  (a YAML-level problem JSON Schema cannot see)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from outloop_cli.errors import Problem

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
VALID = sorted((CORPUS / "valid").iterdir())
INVALID = sorted((CORPUS / "invalid").iterdir())

_EXPECT_RE = re.compile(rb"^# expect: (-|\d+(?::\d+)?) (.+)$")


@dataclass(frozen=True)
class Expectation:
    line: int | None
    col: int | None
    fragment: str

    @property
    def where(self) -> str:
        """How the CLI prints the location after the file name: ``:7:3``, ``:6`` or nothing."""
        return "".join(f":{n}" for n in (self.line, self.col) if n is not None)

    def matches(self, problem: Problem) -> bool:
        return (
            problem.line == self.line
            and problem.col == self.col
            and self.fragment in f"{problem.message}\n{problem.hint or ''}"
        )


@dataclass(frozen=True)
class InvalidFixture:
    path: Path
    expectations: tuple[Expectation, ...]
    schema_applies: bool


def read_invalid(path: Path) -> InvalidFixture:
    expectations = []
    schema_applies = True
    # bytes: some fixtures are not valid UTF-8 past their header
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"#"):
            break
        if raw.strip() == b"# schema: n/a":
            schema_applies = False
            continue
        match = _EXPECT_RE.match(raw)
        if match is None:
            continue
        where, fragment = match.group(1).decode(), match.group(2).decode()
        line = col = None
        if where != "-":
            parts = [int(n) for n in where.split(":")]
            line = parts[0]
            col = parts[1] if len(parts) > 1 else None
        expectations.append(Expectation(line, col, fragment))
    assert expectations, f"{path.name} has no `# expect:` line"
    return InvalidFixture(path, tuple(expectations), schema_applies)


INVALID_FIXTURES = [read_invalid(path) for path in INVALID]


def ids(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2's core schema, as editors (yaml-language-server) read a file.

    PyYAML implements YAML 1.1, where ``yes`` is a boolean, ``010`` is octal and
    ``2024-06-01`` a date; an editor checking the JSON Schema sees strings and
    decimals. The schema tests load the corpus the way the editor would.
    """


Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
):
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"  # type: ignore[arg-type]


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml12(text: str) -> Any:
    return yaml.load(text, Loader=Yaml12Loader)
