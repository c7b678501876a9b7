"""The loop file validator: the fixture corpus, every key of SPEC §2, and the value parsers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from outloop_cli.agents.registry import PRESETS
from outloop_cli.config import values as v
from outloop_cli.config.loader import (
    check_loop_bytes,
    check_loop_file,
    check_loop_files,
    check_loop_text,
    load_loop_bytes,
    load_loop_file,
    load_loop_text,
)
from outloop_cli.config.model import (
    DEFAULT_BRANCH,
    PLACEHOLDERS,
    AgentConfig,
    CIGoalConfig,
    CommitConfig,
    CredentialConfig,
    GoalConfig,
    LimitsConfig,
    LoopConfig,
    SandboxConfig,
    SandboxPath,
)
from outloop_cli.config.values import format_duration, parse_duration, parse_size
from outloop_cli.errors import ConfigError, Problem
from outloop_cli.templates_dir import SCHEMA_TOKEN, loop_template, render_demo_loop
from tests.support.config_corpus import CORPUS, INVALID_FIXTURES, VALID, InvalidFixture, ids

# --- the corpus -------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_valid_fixture_loads(path: Path) -> None:
    config, problems = check_loop_file(path, repo_root=CORPUS)
    assert problems == []
    assert config is not None
    assert config.name == path.stem
    assert config.path == f"valid/{path.name}"


@pytest.mark.parametrize("fixture", INVALID_FIXTURES, ids=[f.path.name for f in INVALID_FIXTURES])
def test_invalid_fixture_reports_what_it_expects(fixture: InvalidFixture) -> None:
    config, problems = check_loop_file(fixture.path, repo_root=CORPUS)
    assert config is None
    shown = "\n".join(p.render() for p in problems)
    for expected in fixture.expectations:
        assert any(expected.matches(p) for p in problems), f"missing {expected}\ngot:\n{shown}"
    # and nothing it does not expect: each problem is named by some expectation
    for problem in problems:
        assert any(e.matches(problem) for e in fixture.expectations), f"unexpected {problem}"


@pytest.mark.parametrize("fixture", INVALID_FIXTURES, ids=[f.path.name for f in INVALID_FIXTURES])
def test_every_problem_has_a_location_and_a_hint(fixture: InvalidFixture) -> None:
    _, problems = check_loop_file(fixture.path, repo_root=CORPUS)
    for problem in problems:
        assert problem.hint, problem
        assert problem.file == f"invalid/{fixture.path.name}"
        file_level = problem.message.startswith("loop name")
        assert file_level or (problem.line is not None and problem.col is not None), problem


def test_the_corpus_is_big_enough() -> None:
    assert len(INVALID_FIXTURES) >= 40
    assert sum(len(f.expectations) for f in INVALID_FIXTURES) >= 100


def test_problems_come_in_file_order() -> None:
    fixture = next(f for f in INVALID_FIXTURES if f.path.name == "many-problems.yml")
    _, problems = check_loop_file(fixture.path, repo_root=CORPUS)
    lines = [(p.line or 0, p.col or 0) for p in problems]
    assert lines == sorted(lines)
    assert len(problems) == 10


# --- every key of SPEC §2 -----------------------------------------------------------


def test_every_key_is_parsed_into_the_model() -> None:
    config = load_loop_file(CORPUS / "valid" / "everything.yml", repo_root=CORPUS)
    assert config == LoopConfig(
        name="everything",
        path="valid/everything.yml",
        description="Make the test suite pass",
        agent=AgentConfig(
            preset="claude",
            prompt="Make the failing tests pass without deleting tests.\n",
            model="claude-sonnet-4-5",
            args=("--verbose", "--session={run}-{iteration}"),
            timeout=900.0,
            idle_timeout=300.0,
            env=(("DEBUG", "true"), ("LOG_LEVEL", "info"), ("RETRIES", "3")),
            pass_env=("HTTPS_PROXY", "NO_PROXY"),
        ),
        goal=GoalConfig(
            run="pytest -q --junitxml=reports/junit.xml",
            junit="reports/junit.xml",
            timeout=600.0,
            env=(("PYTHONHASHSEED", "0"),),
            pass_env=("DATABASE_URL",),
        ),
        limits=LimitsConfig(
            max_iterations=12,
            max_time=3600.0,
            max_cost_usd=5.0,
            max_tokens=2_000_000,
            stall=4,
            max_agent_errors=2,
        ),
        commit=CommitConfig(max_file_size=2 * 1024 * 1024),
        branch="ai/{loop}/{run}",
        push=True,
        protect=(".github/workflows/**", "tests/**", "ci/"),
        credentials=(
            CredentialConfig(
                name="openai",
                via="proxy",
                upstream="https://api.openai.com",
                env="OPENAI_BASE_URL",
                header="Authorization",
                scheme="Bearer",
                allow=("POST /v1/*", "GET /v1/models"),
                ca_bundle="certs/ca.pem",
            ),
            CredentialConfig(
                name="anthropic",
                via="proxy",
                upstream="https://api.anthropic.com/v1",
                env="ANTHROPIC_BASE_URL",
                header="x-api-key",
                scheme="",
            ),
            CredentialConfig(name="github", via="git", host="github.com"),
            CredentialConfig(name="legacy-tool", via="helper"),
        ),
        sandbox=SandboxConfig(
            mode="bwrap",
            read=(SandboxPath("~/.cache/pip", 54), SandboxPath("/opt/toolchain", 54)),
            write=(SandboxPath("~/.cache/go-build", 55),),
        ),
    )
    assert config.protected_patterns() == (".outloop/**", *config.protect)


def load(name: str) -> LoopConfig:
    return load_loop_file(CORPUS / "valid" / name, repo_root=CORPUS)


def test_defaults_of_a_minimal_loop() -> None:
    config = load("command-minimal.yml")
    assert config.agent == AgentConfig(
        preset="command", command=("my-agent", "--task-file", "{prompt_file}")
    )
    assert config.goal == GoalConfig(run="make test")
    assert config.limits == LimitsConfig()
    assert config.commit == CommitConfig()
    assert (config.branch, config.push, config.protect, config.sandbox) == (
        DEFAULT_BRANCH,
        False,
        (),
        SandboxConfig(mode="auto"),
    )
    assert config.credentials == ()
    assert config.description is None


def test_a_command_string_is_split_like_a_shell_and_keeps_placeholders() -> None:
    agent = load("command-string-placeholders.yml").agent
    assert agent.command == (
        "my-agent",
        "--prompt",
        "{prompt}",
        "--file",
        "{prompt_file}",
        "--dir",
        "{workdir}",
        "--turn",
        "{iteration}",
        "--tag",
        "{loop}-{run}",
        "--json",
        '{{"x": 1}}',
    )
    assert agent.prompt == "Fix it."


def test_prompt_file_and_junit_are_normalised_repo_paths() -> None:
    config = load("codex-prompt-file.yml")
    assert (config.agent.prompt_file, config.agent.prompt) == ("docs/PROMPT.md", None)
    assert config.goal.junit == "reports/junit.xml"


@pytest.mark.parametrize(
    ("name", "agent_timeout", "idle_timeout", "goal_timeout", "max_time"),
    [
        ("durations.yml", 5400.0, 0.5, 90.0, 9000.0),
        ("durations-more.yml", 1.5, None, 90.0, 45.0),
        ("nullable-limits.yml", 1800.0, None, 600.0, None),
    ],
)
def test_durations(
    name: str,
    agent_timeout: float,
    idle_timeout: float | None,
    goal_timeout: float,
    max_time: float | None,
) -> None:
    config = load(name)
    assert config.agent.timeout == agent_timeout
    assert config.agent.idle_timeout == idle_timeout
    assert config.goal.timeout == goal_timeout
    assert config.limits.max_time == max_time


def test_nullable_limits_switch_limits_off() -> None:
    limits = load("nullable-limits.yml").limits
    assert limits == LimitsConfig(
        max_iterations=1, max_time=None, max_cost_usd=None, max_tokens=None, stall=1
    )


def test_ci_goals() -> None:
    github = load("ci-github.yml").goal
    assert github == GoalConfig(
        ci=CIGoalConfig(
            provider="github",
            repo="octo-org/widgets.js",
            api_url="https://github.example.com/api/v3",
            required_checks=("tests", "lint / ruff"),
            timeout=2700.0,
        )
    )
    gitlab = load("ci-gitlab.yml").goal
    assert gitlab.ci == CIGoalConfig(
        provider="gitlab", repo="group/subgroup/project", api_url="http://localhost:8929/api/v4"
    )
    assert gitlab.run is None
    assert load("ci-defaults.yml").goal.ci == CIGoalConfig()


def test_credentials_for_every_via() -> None:
    gemini = load("gemini.yml").credentials
    assert gemini == (
        CredentialConfig(
            name="gemini",
            via="proxy",
            upstream="https://generativelanguage.googleapis.com",
            env="GEMINI_BASE_URL",
            header="x-goog-api-key",
            scheme="",
        ),
    )


def test_sizes() -> None:
    assert load("sizes.yml").commit.max_file_size == 500_000
    assert load("sizes-bytes.yml").commit.max_file_size == 1_048_576


def test_branch_template_and_yaml_suffix() -> None:
    config = load("branch-templates.yaml")
    assert config.name == "branch-templates"
    assert config.branch == "{run}-for-{loop}"
    assert config.agent.command == ("agent",)


def test_aliases_reuse_a_whole_value() -> None:
    config = load("anchors.yml")
    assert config.agent.env == config.goal.env == (("LANG", "C.UTF-8"), ("TZ", "UTC"))


def test_values_that_yaml_11_would_change_stay_as_written() -> None:
    config = load("yaml-lookalikes.yml")
    assert config.description == "2024-06-01"
    assert config.agent.command == ("agent", "2024-06-01")
    assert dict(config.agent.env) == {
        "COUNTRY": "NO",
        "LEVEL": "010",
        "RATIO": "1.50",
        "EMPTY": "",
    }


def test_the_other_presets() -> None:
    assert load("aider.yml").agent == AgentConfig(
        preset="aider", prompt="Make the linter happy.", model="gpt-4o"
    )
    assert load("gemini.yml").agent.preset == "gemini"


# --- loading from text (the engine reads the file at the starting commit) -----------

MINIMAL = "agent:\n  preset: command\n  command: [a]\ngoal:\n  run: 'true'\n"


def test_load_loop_text_with_a_repo_path() -> None:
    config = load_loop_text(MINIMAL, file="HEAD:.outloop/x.yml", name="x", path=".outloop/x.yml")
    assert (config.name, config.path) == ("x", ".outloop/x.yml")


def test_load_loop_text_raises_every_problem_at_once() -> None:
    text = "agent:\n  preset: claud\ngoal: {}\nlimits: {stall: 0}\n"
    with pytest.raises(ConfigError) as caught:
        load_loop_text(text, file="f.yml", name="f")
    problems = caught.value.problems
    assert [(p.line, p.col) for p in problems] == [(2, 11), (3, 7), (4, 17)]
    rendered = caught.value.render()
    assert rendered.splitlines()[0] == (
        "f.yml:2:11: agent.preset: expected one of claude, codex, aider, gemini, command, "
        "got 'claud'"
    )
    assert rendered.count("hint:") == 3
    assert caught.value.exit_code == 2


def test_check_loop_text_gives_the_config_or_the_problems() -> None:
    config, problems = check_loop_text(MINIMAL, file="f.yml", name="f")
    assert problems == [] and config is not None and config.agent.command == ("a",)
    config, problems = check_loop_text("agent: [", file="f.yml", name="f")
    assert config is None and problems[0].message.startswith("invalid YAML")


def test_loading_raw_bytes_as_read_from_a_commit() -> None:
    config = load_loop_bytes(MINIMAL.encode(), file="x.yml@abc", name="x", path=".outloop/x.yml")
    assert (config.name, config.path) == ("x", ".outloop/x.yml")
    with pytest.raises(ConfigError) as caught:
        load_loop_bytes(b"agent:\n  prompt: caf\xe9\n", file="x.yml@abc", name="x")
    assert caught.value.problems == (
        Problem("x.yml@abc", "not valid UTF-8 (byte 0xe9)", 2, 14, "save the file as UTF-8"),
    )
    assert check_loop_bytes(b"agent: [", file="f", name="f")[1][0].line == 1


def test_files_that_are_not_loop_files(tmp_path: Path) -> None:
    missing = check_loop_file(tmp_path / "nope.yml", repo_root=tmp_path)[1]
    assert missing == [Problem("nope.yml", "no such file", hint="`outloop list` shows the loops")]
    (tmp_path / "dir.yml").mkdir()
    assert check_loop_file(tmp_path / "dir.yml", repo_root=tmp_path)[1][0].message == (
        "is a directory, not a loop file"
    )
    (tmp_path / "loop.json").write_text(MINIMAL)
    problem = check_loop_file(tmp_path / "loop.json", repo_root=tmp_path)[1][0]
    assert problem.message == "a loop file must end in .yml or .yaml"


def test_files_that_would_block_or_flood_the_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yml"
    os.mkfifo(fifo)
    assert check_loop_file(fifo, repo_root=tmp_path)[1][0].message == "is not a regular file"
    huge = tmp_path / "huge.yml"
    huge.write_bytes(b"# " + b"x" * (2 * 1024 * 1024))
    problem = check_loop_file(huge, repo_root=tmp_path)[1][0]
    assert problem.message == "is 2048 KiB; a loop file is at most 1 MiB"


def test_two_files_with_one_loop_name(tmp_path: Path) -> None:
    (tmp_path / "fix.yml").write_text(MINIMAL)
    (tmp_path / "fix.yaml").write_text(MINIMAL)
    _, problems = check_loop_files(
        [tmp_path / "fix.yml", tmp_path / "fix.yaml"], repo_root=tmp_path
    )
    assert [p.message for p in problems] == ["loop name 'fix' is also used by fix.yml"]


def test_a_file_outside_the_repo_is_shown_as_given(tmp_path: Path) -> None:
    (tmp_path / "x.yml").write_text("agent: 1\n")
    _, problems = check_loop_file(tmp_path / "x.yml", repo_root=tmp_path / "elsewhere")
    assert problems[0].file == str(tmp_path / "x.yml")


# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
        ("500ms", 0.5),
        ("2.5h", 9000.0),
        ("0.5s", 0.5),
        ("90", 90.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (90, 90.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "15min",
        "1d",
        "-5s",
        "30m1h",
        "1h1h",
        "h",
        "1 h",
        "1.h",
        ".5s",
        "1e3",
        "inf",
        "nan",
        "5S",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(v.BadValue) as caught:
        parse_duration(text)
    assert caught.value.hint == v.DURATION_HINT


@pytest.mark.parametrize("value", [True, float("inf"), float("nan"), -1, None])
def test_parse_duration_rejects_non_durations(value: object) -> None:
    with pytest.raises(v.BadValue):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (5400, "1h30m"), (3600, "1h"), (2.5, "2.5s")],
)
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("500KB", 500_000),
        ("500 KB", 500_000),
        ("500kB", 500_000),
        ("5MB", 5_000_000),
        ("5MiB", 5 * 1024**2),
        ("1GiB", 1024**3),
        ("2TB", 2 * 1000**4),
        ("10B", 10),
        (1024, 1024),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("5mb", "did you mean `MB`?"),
        ("5 MBs", "unknown size unit"),
        ("1.5MB", "whole number"),
        ("-1", "negative"),
        ("MB", "expected a size"),
        ("", "expected a size"),
    ],
)
def test_parse_size_rejects(text: str, fragment: str) -> None:
    with pytest.raises(v.BadValue) as caught:
        parse_size(text)
    assert fragment in f"{caught.value.message} {caught.value.hint}"


@pytest.mark.parametrize("size", [1, 999, 1000, 1024, 5 * 1024**2, 500_000, 3 * 1000**4])
def test_format_size_reads_back(size: int) -> None:
    assert parse_size(v.format_size(size)) == size


def test_suggest() -> None:
    assert v.suggest("max_iteration", ["max_iterations", "max_time"]) == "max_iterations"
    assert v.suggest("PROXY", ["proxy", "git"]) == "proxy"
    assert v.suggest("colour", ["agent", "goal"]) is None


def test_loop_names() -> None:
    assert v.loop_name_problem("fix-tests_2.v1") is None
    for bad in ("", "-x", ".hidden", "a b", "x.lock", "a..b", "ü"):
        assert v.loop_name_problem(bad), bad


# --- each JSON Schema pattern says what its Python check says -------------------------


def _accepts(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except v.BadValue:
        return False
    return True


def _positive_duration(text: str) -> object:
    if parse_duration(text) <= 0:
        raise v.BadValue("zero")
    return text


def _positive_size(text: str) -> object:
    if parse_size(text) <= 0:
        raise v.BadValue("zero")
    return text


# fmt: off
PATTERN_CASES: list[tuple[str, str, Callable[[str], object], list[str]]] = [
    ("duration", v.DURATION_PATTERN, parse_duration, [
        "0", "90", "1.5", "90s", "15m", "1h30m", "500ms", "2.5h", "1h2m3s4ms", "0s",
        "", "1d", "15min", "-5s", "30m1h", "1h1h", ".5", "1.", "h", "1 h", "1e3", "5S",
    ]),
    ("positive duration", v.POSITIVE_DURATION_PATTERN, _positive_duration, [
        "0", "0s", "0.0", "0h0m", "0.01s", "10", "1h", "0m1s", "00", "0.5",
    ]),
    ("size", v.SIZE_PATTERN, parse_size, [
        "0", "1", "5MB", "5 MB", "1GiB", "10kB", "5mb", "5  MB", "1.5MB", "MB", "", "-1", "5 ",
    ]),
    ("positive size", v.POSITIVE_SIZE_PATTERN, _positive_size, ["0", "0KB", "00", "1B", "10"]),
    ("env name", v.ENV_NAME_PATTERN, v.check_env_name, [
        "HOME", "_X", "a1", "OUTLOOP", "OUTLOOPX", "OUTLOOP_", "OUTLOOP_X", "1A", "A-B", "",
        "A B", "Ä",
    ]),
    ("template", v.template_pattern(PLACEHOLDERS), v.check_template, [
        "", "x", "{prompt}", "a{run}b{loop}", "{{", "}}", "{{x}}", "{{{run}}}", "{", "}",
        "{x}", "{prompt_fil}", "{}", "{ run }", "}{", "{{{", "a}b",
    ]),
    ("repo path", v.REPO_PATH_PATTERN, v.check_repo_path, [
        "a", "a/b.txt", "./a", "a//b", "a/./b", ".hidden", "..a", "a..", "a/..b", "",
        "/a", "~/a", "a/../b", "..", "../a", "a/..", "a\\b", "a/", ".", "./", "a\x00",
    ]),
    ("glob", v.GLOB_PATTERN, v.check_glob, [
        "**", ".github/workflows/**", "tests/", "*.py", "a/**/b", "", "/a", "../a", "a\\b",
        "~x", "a/../b",
    ]),
    ("host", v.HOST_PATTERN, v.check_host, [
        "github.com", "localhost", "git.example.com:8443", "[::1]:22", "a-b.c", "-a.com",
        "a_b.com", "https://github.com", "github.com/", "a..b", "", "h:0", "h:65536",
    ]),
    ("url", v.URL_PATTERN, v.check_url, [
        "https://api.openai.com", "https://h:8443/v1/", "http://localhost:8080/x",
        "http://127.0.0.1", "http://[::1]:9/", "http://example.com", "ftp://h", "api.x.com",
        "https://u:p@h.com", "https://h.com?q=1", "https://h.com/#f", "https://h .com",
        "https://", "http://localhost.evil.com", "http://127.0.0.1.evil.com",
    ]),
    ("allow rule", v.ALLOW_RULE_PATTERN, v.check_allow_rule, [
        "POST /v1/*", "* /v1/models", "GET /", "FETCH /x", "POST v1", "post /x", "POST  /x", "",
        "POST /a b", "POST",
    ]),
    ("branch template", v.BRANCH_TEMPLATE_PATTERN,
     lambda text: v.check_branch_template(text, "fix-tests"), [
        "outloop/{loop}/{run}", "{run}", "ai/{run}-{loop}", "x/{loop}", "{run}/", "/{run}",
        "a..b/{run}", "a/.x/{run}", "{run}.lock", "{run}.lock/x", "a b/{run}", "{run}.",
        "-{run}", "{iteration}/{run}", "{run", "a//{run}", "a~{run}", "a@{run}", ".{run}",
        "{run}/a.", "{run}@{{",
    ]),
]
# fmt: on


@pytest.mark.parametrize(
    ("pattern", "check", "samples"),
    [case[1:] for case in PATTERN_CASES],
    ids=[case[0] for case in PATTERN_CASES],
)
def test_schema_pattern_agrees_with_its_check(
    pattern: str, check: Callable[[str], object], samples: list[str]
) -> None:
    disagree = [
        (text, bool(re.fullmatch(pattern, text)), _accepts(check, text))
        for text in samples
        if bool(re.fullmatch(pattern, text)) != _accepts(check, text)
    ]
    assert disagree == []


# --- cost -------------------------------------------------------------------------------


def test_importing_config_stays_light() -> None:
    """The engine and `outloop validate` import the config; JSON Schema tooling stays out."""
    code = "import sys, outloop_cli.config; print('\\n'.join(sorted(sys.modules)))"
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {"jsonschema", "typer", "click", "rich", "json", "difflib", "shlex", "git"}
    assert modules & heavy == set()


# --- the bundled loop files -------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_starter_files_are_valid_loops(preset: str) -> None:
    text = loop_template(preset).replace(SCHEMA_TOKEN, "/opt/outloop/schema.json")
    config = load_loop_text(text, file=f".outloop/{preset}.yml", name=preset)
    assert config.agent.preset == preset
    assert config.goal.run == "pytest -q"
    assert config.protect == (".github/workflows/**",)


def test_demo_loop_is_a_valid_loop() -> None:
    config = load_loop_text(render_demo_loop(sys.executable), file="loop.yml", name="fix-tests")
    assert config.agent.command is not None
    assert config.agent.command[0] == sys.executable


def test_numbers_that_yaml_12_reads_as_numbers() -> None:
    config = load("numbers.yml")
    assert config.limits.max_tokens == 1_000_000
    assert config.limits.max_cost_usd == 0.5
    assert config.limits.max_iterations == 3
    assert isinstance(config.limits.max_iterations, int)
    assert config.commit.max_file_size == 1_000_000
