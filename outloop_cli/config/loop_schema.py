"""The loop file's schema, declared once.

Every key of ``.outloop/<loop>.yml`` is a :class:`~outloop_cli.config.spec_collections.Field`
below, with its type, description and rules (the framework is
:mod:`outloop_cli.config.spec`). Two things are derived from that one declaration:

* the validator: ``LOOP.check`` walks the YAML node tree and builds the frozen
  dataclasses of :mod:`outloop_cli.config.model` (:mod:`~outloop_cli.config.loader`
  calls it);
* :func:`json_schema`, a JSON Schema (draft 2020-12) for editors.

Defaults are not repeated here: they are read from the model's dataclasses. Nor
are the names that backends define: ``agent.preset`` lists the presets of
:mod:`outloop_cli.agents.registry` and ``goal`` takes one of the kinds of
:mod:`outloop_cli.goals.registry`, both read at each use (a backend registered
later is accepted too) and without importing any backend.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.agents import registry as agents
from outloop_cli.config import model as m
from outloop_cli.config import values as v
from outloop_cli.config.egress_schema import EGRESS_RULES
from outloop_cli.config.spec import INVALID, Context, JSONSchema, KeyPath, Spec, document_schema
from outloop_cli.config.spec_collections import (
    Argv,
    Field,
    ListOf,
    MapOf,
    Obj,
    Rule,
    Seen,
    index_keys,
)
from outloop_cli.config.spec_rules import ExactlyOne, Exclusive, OnlyWith, SchemaOnly, When
from outloop_cli.config.spec_scalars import (
    Bool,
    Duration,
    Enum,
    EnvValue,
    Int,
    PositiveNumber,
    Size,
    Str,
)
from outloop_cli.config.trigger_schema import TRIGGERS
from outloop_cli.goals import registry as goals


@dataclass(frozen=True)
class Branch(Spec):
    """The branch template: its placeholders, and the branch name it gives for this loop."""

    what = "a branch name template"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        return Str(self.what, check_text=lambda t: v.check_branch_template(t, ctx.name)).check(
            node, path, ctx
        )

    def schema(self) -> JSONSchema:
        return {"type": "string", "pattern": v.anchored(v.BRANCH_TEMPLATE_PATTERN)}


ENV_NAME = Str("an environment variable name", v.ENV_NAME_PATTERN, v.check_env_name)
REPO_PATH = Str("a repo-relative path", v.REPO_PATH_PATTERN, v.check_repo_path)
TEMPLATE = Str(
    "a string with placeholders",
    v.template_pattern(m.PLACEHOLDERS),
    functools.partial(v.check_template, names=m.PLACEHOLDERS),
)
# what a loop sets for the agent or the goal: not the variables the runner owns
LOOP_ENV_NAME = Str("an environment variable name", v.LOOP_ENV_NAME_PATTERN, v.check_loop_env_name)
ENV = MapOf(LOOP_ENV_NAME, EnvValue(), pairs=True)
PASS_ENV = ListOf(
    Str("an environment variable name", v.PASS_ENV_NAME_PATTERN, v.check_pass_env_name),
    unique=True,
)
_PLACEHOLDER_DOC = ", ".join(f"{{{p}}}" for p in m.PLACEHOLDERS)

AGENT = Obj(
    m.AgentConfig,
    (
        Field(
            "preset",
            Enum(agents.preset_names),
            "Which agent runs each turn; `command` runs any program given in `command`.",
            required=True,
        ),
        Field(
            "command",
            Argv(TEMPLATE),
            "The agent's command line (a list, or a string split like a shell would). "
            f"Required with preset `command`; replaces a preset's program otherwise. "
            f"Placeholders: {_PLACEHOLDER_DOC}; write {{{{ and }}}} for literal braces.",
            example='["my-agent", "--task-file", "{prompt_file}"]',
        ),
        Field(
            "prompt",
            Str(non_blank=True),
            "The task, as text. Use this or `prompt_file`.",
            example='"Make the failing tests pass."',
        ),
        Field(
            "prompt_file",
            REPO_PATH,
            "The task, in a file of the repository (read from the starting commit).",
            example="PROMPT.md",
        ),
        Field(
            "model",
            Str(non_blank=True),
            "The model the preset asks its agent to use.",
            example="claude-sonnet-4-5",
        ),
        Field(
            "args",
            ListOf(TEMPLATE),
            f"Extra arguments appended to the preset's command line. Placeholders: {_PLACEHOLDER_DOC}.",
            example='["--verbose"]',
        ),
        Field(
            "timeout",
            Duration(),
            "Time limit of one agent turn; the agent's whole process group is killed after it.",
        ),
        Field(
            "idle_timeout",
            Duration(zero_is_off=True),
            "An agent that prints nothing for this long counts as hung; 0 or null turns it off.",
            nullable=True,
        ),
        Field(
            "env",
            ENV,
            "Non-secret environment variables for the agent. Values are taken as written.",
            example="{LOG_LEVEL: info}",
        ),
        Field(
            "pass_env",
            PASS_ENV,
            "Names of variables passed through from outloop's own environment.",
            example="[HTTPS_PROXY, NO_PROXY]",
        ),
    ),
    (
        Exclusive(("prompt", "prompt_file")),
        When("preset", (agents.COMMAND,), require=("command",), forbid=("model",)),
        When(
            "preset",
            agents.prompted_presets,
            require_one_of=("prompt", "prompt_file"),
            hint="say what the agent should do; only preset `command` may run without a prompt",
        ),
    ),
)

CI = Obj(
    m.CIGoalConfig,
    (
        Field("provider", Enum(m.CI_PROVIDERS), "Where the checks run."),
        Field(
            "repo",
            Str("owner/name", v.CI_REPO_PATTERN, hint="e.g. octo/widgets, or group/sub/project"),
            "The repository whose checks count (`owner/name`; GitLab groups may nest). "
            "Default: from the `origin` remote.",
        ),
        Field(
            "api_url",
            Str("an http(s) URL", v.URL_PATTERN, v.check_url),
            "The API's base URL, for GitHub Enterprise or self-hosted GitLab. "
            "Default: $GITHUB_API_URL, or the public API.",
        ),
        Field(
            "required_checks",
            ListOf(
                Str("a check name", non_blank=True),
                min_items=1,
                unique=True,
                empty_hint="leave `required_checks` out to require every check",
            ),
            "Names of the checks that must pass. Default: every check on the pushed head.",
        ),
        Field("timeout", Duration(), "How long to wait for the checks of one push."),
        Field(
            "grace",
            Duration(),
            "How long to wait for the first check to appear before calling the push unchecked.",
        ),
        Field("poll", Duration(), "How often to ask for the checks at first (it slows down)."),
    ),
    (
        When(
            "provider",
            ("github",),
            refine={
                "repo": Str("owner/name", v.GITHUB_REPO_PATTERN, hint="a GitHub repo is owner/name")
            },
        ),
    ),
)

JUDGE = Obj(
    m.JudgeConfig,
    (
        Field(
            "preset",
            Enum(m.JUDGE_PRESETS),
            "Which CLI judges (a fresh session each time, read-only, no shell); `command` "
            "runs the program given in `command`.",
            required=True,
        ),
        Field(
            "spec",
            REPO_PATH,
            "The written spec the work is judged against, a file of the repository read from "
            "the starting commit; the agent may not change it.",
            required=True,
            example="docs/SPEC.md",
        ),
        Field(
            "criteria",
            ListOf(Str("a criterion", non_blank=True), min_items=1, unique=True),
            "Named checks, each judged on its own (pass or fail, with a reason). "
            "Default: the spec as a whole is one check.",
            example='["every CLI flag is documented with an example"]',
        ),
        Field(
            "votes",
            Int(1, m.MAX_JUDGE_VOTES),
            "Independent judgments per iteration; each criterion takes the majority.",
        ),
        Field(
            "timeout", Duration(), "Time limit of one judgment; past it the vote is a judge_error."
        ),
        Field(
            "model",
            Str(non_blank=True),
            "The model the judge's CLI is asked to use.",
            example="claude-sonnet-4-5",
        ),
        Field(
            "command",
            Argv(Str("a program or argument", non_blank=True)),
            "Preset `command`: the judge program; it reads the prompt on stdin and prints the "
            "verdict JSON.",
            example='["python3", "tools/judge.py"]',
        ),
    ),
    (
        When("preset", ("command",), require=("command",), forbid=("model",)),
        When("preset", tuple(p for p in m.JUDGE_PRESETS if p != "command"), forbid=("command",)),
    ),
)

GOAL = Obj(
    m.GoalConfig,
    (
        Field(
            "run",
            Str("a shell command", non_blank=True),
            "A shell command run in the worktree (`/bin/sh -c`); the goal is met when it exits 0.",
            example="pytest -q",
        ),
        Field(
            "junit",
            REPO_PATH,
            "A JUnit XML file that `run` writes, for pass/fail counts and failing test names.",
            example="reports/junit.xml",
        ),
        Field("timeout", Duration(), "Time limit of one run of the goal command."),
        Field(
            "env",
            ENV,
            "Non-secret environment variables for the goal command.",
            example='{PYTHONHASHSEED: "0"}',
        ),
        Field(
            "pass_env",
            PASS_ENV,
            "Variables passed through to the goal command.",
            example="[DATABASE_URL]",
        ),
        Field(
            "ci",
            CI,
            "Instead of `run`: the goal is met when every (required) CI check on the pushed head is green.",
            example="{provider: github}",
        ),
        Field(
            "judge",
            JUDGE,
            "A model judges each iteration's commit against a written spec, from outside the "
            "agent; beside `run` or `ci` it is asked only once they pass.",
            example="{preset: claude, spec: docs/SPEC.md}",
        ),
    ),
    (
        ExactlyOne(goals.kind_names, alongside=goals.companion_names),
        OnlyWith(
            ("junit", "timeout", "env", "pass_env"),
            "run",
            hint="these keys set up `goal.run`; a CI goal has its own `ci.timeout`",
        ),
    ),
)

LIMITS = Obj(
    m.LimitsConfig,
    (
        Field("max_iterations", Int(1), "Stop after this many agent turns."),
        Field(
            "max_time",
            Duration(),
            "Stop after this much time in all; null for no limit.",
            nullable=True,
        ),
        Field(
            "max_cost_usd",
            PositiveNumber(),
            "Stop once the agent reports having spent this much (US dollars).",
            nullable=True,
        ),
        Field(
            "max_tokens",
            Int(1),
            "Stop once the agent reports having used this many tokens.",
            nullable=True,
        ),
        Field(
            "stall",
            Int(1),
            "Stop after this many turns in a row that changed nothing, or failed the same way.",
        ),
        Field(
            "max_agent_errors",
            Int(1),
            "Stop after this many agent failures (non-zero exit, timeout) in a row.",
        ),
    ),
)

COMMIT = Obj(
    m.CommitConfig,
    (
        Field(
            "max_file_size",
            Size(),
            "Files larger than this are left out of iteration commits (bytes, or 500KB, 5MiB…).",
        ),
    ),
)

_PROXY_KEYS = ("upstream", "env", "header", "scheme", "allow", "ca_bundle")
# what `via: proxy` needs is checked once the preset's credential of the same name has
# filled in what the entry leaves out (config/preset_credentials.py); editors see the rule
_PROXY_NEEDS = SchemaOnly(When("via", ("proxy",), require=("upstream", "env")))
CREDENTIAL = Obj(
    m.CredentialConfig,
    (
        Field(
            "via",
            Enum(m.CREDENTIAL_VIAS),
            "How the agent gets access: a local proxy that adds the key, git's credential "
            "helper, or (discouraged) a short-lived raw token.",
        ),
        Field(
            "upstream",
            Str("an https URL", v.URL_PATTERN, v.check_url),
            "via proxy: the API the proxy forwards to (https; http only for localhost); "
            "it must lie inside what your policy allows for this secret. Required, unless the "
            "agent preset's credential of the same name gives it.",
            example="https://api.openai.com",
        ),
        Field(
            "env",
            LOOP_ENV_NAME,
            "via proxy: the variable that gives the agent the proxy's URL (never the key).",
            example="OPENAI_BASE_URL",
        ),
        Field(
            "header",
            Str(
                "an HTTP header name", v.HTTP_TOKEN_PATTERN, hint="e.g. Authorization or x-api-key"
            ),
            "via proxy: the header that carries the key, e.g. x-api-key.",
        ),
        Field(
            "scheme",
            Str(
                "an auth scheme or an empty string",
                f"(?:{v.HTTP_TOKEN_PATTERN})?",
                hint='e.g. Bearer, or "" to send the bare key',
            ),
            'via proxy: the word before the key in the header; "" sends the bare key. '
            "Default: Bearer for the Authorization header, the bare key for any other.",
        ),
        Field(
            "allow",
            ListOf(
                Str('a "METHOD /path" rule', v.ALLOW_RULE_PATTERN, v.check_allow_rule),
                min_items=1,
                unique=True,
                empty_hint="leave `allow` out to allow every request under `upstream`",
            ),
            'via proxy: the requests that may pass, as "METHOD /path" with * wildcards. '
            "Default: everything under `upstream`.",
        ),
        Field(
            "ca_bundle",
            REPO_PATH,
            "via proxy: CA certificates (PEM, in the repository) for a private upstream.",
        ),
        Field(
            "host",
            Str("a host name", v.HOST_PATTERN, v.check_host),
            "via git: the host whose git credentials this is.",
            example="github.com",
        ),
    ),
    (
        When("via", ("proxy",), forbid=("host",)),
        When("via", ("git",), forbid=_PROXY_KEYS),
        When("via", ("helper",), forbid=(*_PROXY_KEYS, "host")),
        _PROXY_NEEDS,
        SchemaOnly(When("via", ("git",), require=("host",))),
    ),
)
# an entry named like a preset's credential (`anthropic`, `openai`, …) may change single keys
PRESET_CREDENTIAL = dataclasses.replace(
    CREDENTIAL, rules=tuple(r for r in CREDENTIAL.rules if r is not _PROXY_NEEDS)
)


@dataclass(frozen=True)
class Credentials(MapOf):
    """``credentials:`` by name; the JSON Schema relaxes the entries a preset can complete."""

    def schema(self) -> JSONSchema:
        out = super().schema()
        names = sorted(
            {c.name for p in agents.preset_names() for c in agents.default_credentials(p)}
        )
        out["properties"] = {name: PRESET_CREDENTIAL.schema() for name in names}
        return out


@dataclass(frozen=True)
class PresetCredentialNeeds(Rule):
    """Schema only: an entry named like a preset's credential (``openai: {}``) needs
    ``upstream`` and ``env`` unless the loop's preset is one that brings that credential.

    The validator says the same, knowing more, in config/preset_credentials.py; this is
    the part of it a JSON Schema can state, so editors and the validator agree.
    """

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        return None

    def schema(self, obj: Obj) -> JSONSchema:
        presets = agents.preset_names()
        names = sorted({c.name for p in presets for c in agents.default_credentials(p)})
        conditions: list[JSONSchema] = []
        for name in names:
            bringing = [
                p for p in presets if name in {c.name for c in agents.default_credentials(p)}
            ]
            conditions.append(
                {
                    "if": {
                        "not": {
                            "required": ["agent"],
                            "properties": {
                                "agent": {
                                    "required": ["preset"],
                                    "properties": {"preset": {"enum": bringing}},
                                }
                            },
                        }
                    },
                    "then": {
                        "properties": {
                            "credentials": {"properties": {name: _PROXY_NEEDS.schema(CREDENTIAL)}}
                        }
                    },
                }
            )
        return {"allOf": conditions}


@dataclass(frozen=True)
class SandboxPathSpec(Spec):
    """An extra path of the sandbox's view, kept with its line for refusals at run start."""

    what = "an absolute path or ~/path"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        text = Str(self.what, check_text=v.check_sandbox_path).check(node, path, ctx)
        if text is INVALID:
            return INVALID
        return m.SandboxPath(text, node.start_mark.line + 1)

    def schema(self) -> JSONSchema:
        return {"type": "string", "pattern": v.anchored(v.SANDBOX_PATH_PATTERN)}


SANDBOX_MODE = Enum(m.SANDBOXES)
_SANDBOX_MODE_DOC = (
    "`auto` (the default) runs the agent's turn and the goal in bubblewrap where it works, "
    "and warns loudly where it does not; `bwrap` requires it; `none` runs them as they are."
)
SANDBOX_OBJ = Obj(
    m.SandboxConfig,
    (
        Field("mode", SANDBOX_MODE, _SANDBOX_MODE_DOC),
        Field(
            "read",
            ListOf(SandboxPathSpec()),
            "Extra directories or files the sandbox shows read-only (absolute or ~/…); "
            "never outloop's state, a secret store or another repository.",
            example="[~/.cache/pip, /opt/toolchain]",
        ),
        Field(
            "write",
            ListOf(SandboxPathSpec()),
            "Extra directories the sandbox shows read-write (absolute or ~/…), same rules.",
            example="[~/.cache/go-build]",
        ),
    ),
)


@dataclass(frozen=True)
class Sandbox(Spec):
    """``sandbox: auto`` (a mode alone), or ``sandbox: {mode: …, read: […], write: […]}``."""

    what = "one of auto, bwrap, none, or a mapping with mode, read and write"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if isinstance(node, MappingNode):
            return SANDBOX_OBJ.check(node, path, ctx)
        mode = SANDBOX_MODE.check(node, path, ctx)
        return INVALID if mode is INVALID else m.SandboxConfig(mode=mode)

    def schema(self) -> JSONSchema:
        return {"anyOf": [SANDBOX_MODE.schema(), SANDBOX_OBJ.schema()]}

    def default_json(self, value: Any) -> Any:
        assert isinstance(value, m.SandboxConfig)
        if not value.read and not value.write:
            return value.mode
        return {
            "mode": value.mode,
            "read": [p.path for p in value.read],
            "write": [p.path for p in value.write],
        }


APPROVE = Obj(
    m.ApproveConfig,
    (
        Field("push", Bool(), "Wait for a human before outloop first pushes the run's branch."),
        Field(
            "pr",
            Bool(),
            "Wait for a human before the pull request is opened or taken out of draft.",
        ),
        Field(
            "credentials",
            ListOf(
                Str(
                    "a credential name",
                    v.CREDENTIAL_NAME_PATTERN,
                    hint="name one of the loop's `credentials:`",
                ),
                unique=True,
            ),
            "Credentials of this loop the agent gets only once a human approves, asked before "
            "the first agent turn that would hold them.",
            example="[crm]",
        ),
        Field(
            "every_iterations",
            Int(1),
            "Wait for a human after every this many agent turns, before the next one.",
            nullable=True,
        ),
        Field(
            "over_cost_usd",
            PositiveNumber(),
            "Wait for a human (once per run) when the reported cost exceeds this (US dollars).",
            nullable=True,
        ),
        Field(
            "timeout",
            Duration(),
            "How long to wait for a decision; the run then ends as `approval_timeout`.",
        ),
    ),
)


@dataclass(frozen=True)
class ApprovedCredentialsDeclared(Rule):
    """``approve.credentials`` names credentials the loop has (its own, or its preset's)."""

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        approve = seen.values.get("approve")
        if not isinstance(approve, m.ApproveConfig) or not approve.credentials:
            return
        if "credentials" in seen.keys and "credentials" not in seen.values:
            return  # the credentials are invalid: already reported
        declared = [c.name for c in seen.values.get("credentials", ())]
        agent = seen.values.get("agent")
        if isinstance(agent, m.AgentConfig):
            declared += [
                c.name for c in agents.default_credentials(agent.preset) if c.name not in declared
            ]
        items = _list_items(seen.value_nodes.get("approve"), "credentials")
        for index, name in enumerate(approve.credentials):
            if name in declared:
                continue
            close = v.suggest(name, declared)
            if close:
                hint = f"did you mean `{close}`?"
            elif declared:
                hint = "the loop's credentials: " + ", ".join(declared)
            else:
                hint = f"declare it under `credentials:` first, e.g. `credentials: {{{name}: …}}`"
            node = items[index] if index < len(items) else seen.node
            ctx.report(
                node,
                (*path, "approve", "credentials", index),
                f"`{name}` is not a credential of this loop",
                hint,
            )

    def schema(self, obj: Obj) -> JSONSchema:
        # a reference between two keys' values: JSON Schema cannot say it
        return {}


def _list_items(mapping: Node | None, key: str) -> list[Node]:
    if not isinstance(mapping, MappingNode):
        return []
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return list(value_node.value) if isinstance(value_node, SequenceNode) else []
    return []


LOOP = Obj(
    m.LoopConfig,
    (
        Field("description", Str(), "What this loop is for, in a line."),
        Field(
            "agent",
            AGENT,
            "The coding agent that acts each iteration.",
            required=True,
            example='{preset: claude, prompt: "Make the failing tests pass."}',
        ),
        Field(
            "goal",
            GOAL,
            "What must hold for the loop to succeed.",
            required=True,
            example="{run: pytest -q}",
        ),
        Field("limits", LIMITS, "When to give up."),
        Field("commit", COMMIT, "How each iteration is committed."),
        Field(
            "branch",
            Branch(),
            "The scratch branch of a run. Placeholders {loop} and {run}; must contain {run}.",
        ),
        Field(
            "push",
            Bool(),
            "Push the branch after each iteration (outloop pushes, never the agent).",
        ),
        Field(
            "pr",
            Bool(),
            "Open (then update) a pull request from the run's branch; a draft until the goal "
            "is met. Implies `push`.",
        ),
        Field(
            "protect",
            ListOf(Str("a repo-relative glob", v.GLOB_PATTERN, v.check_glob), unique=True),
            "Globs (** allowed) of files the agent must not change; a change stops the run. "
            f"{m.ALWAYS_PROTECTED} is always protected.",
            example='[".github/workflows/**", "tests/**"]',
        ),
        Field(
            "credentials",
            Credentials(
                Str(
                    "a credential name",
                    v.CREDENTIAL_NAME_PATTERN,
                    hint="use lowercase letters, digits, '_' and '-', e.g. openai",
                ),
                CREDENTIAL,
                key_into="name",
            ),
            "Secrets this loop asks for, by name; your policy file decides whether it gets them.",
        ),
        Field(
            "egress",
            EGRESS_RULES,
            "Hosts beyond the broker (`host:port`, `*.` as the first label allowed) that the "
            "sandboxed agent and goal may reach through outloop's egress proxy "
            "(`HTTPS_PROXY`); each must be allowed by your policy file's workspace.",
            example='["pypi.org:443", "files.pythonhosted.org:443"]',
        ),
        Field(
            "sandbox",
            Sandbox(),
            "Where the agent's turn and the goal run. " + _SANDBOX_MODE_DOC + " The sandbox "
            "shows the system directories, the agent's own program and the worktree; "
            "a mapping adds paths: `{mode: auto, read: [~/.cache/pip]}`.",
            example="auto",
        ),
        Field(
            "approve",
            APPROVE,
            "Where the run waits for a human (`outloop approve RUN` / `outloop deny RUN`): "
            "before pushing, before the pull request, before the agent gets a named credential, "
            "every N iterations, over a cost.",
            example="{push: true, credentials: [crm], every_iterations: 5, timeout: 2h}",
        ),
        Field(
            "on",
            TRIGGERS,
            "What starts the loop by itself: a schedule, a failed CI run, a labelled issue or "
            "pull request; compiled by `outloop workflow` (GitHub Actions) and "
            "`outloop schedule` (systemd timers, cron).",
            example='{schedule: ["0 2 * * *"]}',
        ),
    ),
    (PresetCredentialNeeds(), ApprovedCredentialsDeclared()),
)


@functools.cache
def key_index() -> dict[str, tuple[str, ...]]:
    """Where each key name is valid in a loop file, e.g. ``max_iterations`` → ``("limits",)``."""
    return index_keys(LOOP)


SCHEMA_ID = "https://outloop.dev/schema/loop.json"


def json_schema() -> JSONSchema:
    """The loop file as JSON Schema (draft 2020-12), derived from the same declaration."""
    return document_schema(
        LOOP,
        schema_id=SCHEMA_ID,
        title="outloop loop (.outloop/<loop>.yml)",
        description="One loop: an agent, a goal checked from outside, and limits.",
    )
