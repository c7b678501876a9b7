"""Validated loop configuration: frozen dataclasses, produced only by the loader.

Durations are seconds (float), sizes are bytes (int). Mappings are stored as
sorted tuples of pairs so that every object here is immutable and hashable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# auto: bubblewrap where it works, else unsandboxed with a warning everywhere
SANDBOXES = ("auto", "bwrap", "none")
CREDENTIAL_VIAS = ("proxy", "git", "helper")
CI_PROVIDERS = ("github", "gitlab")
PLACEHOLDERS = ("prompt", "prompt_file", "workdir", "iteration", "loop", "run", "event_file")
BRANCH_PLACEHOLDERS = ("loop", "run")

DEFAULT_AGENT_TIMEOUT = 30 * 60.0
DEFAULT_IDLE_TIMEOUT = 10 * 60.0
DEFAULT_GOAL_TIMEOUT = 10 * 60.0
DEFAULT_CI_TIMEOUT = 45 * 60.0
DEFAULT_JUDGE_TIMEOUT = 5 * 60.0
# the judges a loop may ask for; one more is rarely worth its cost
JUDGE_PRESETS = ("claude", "codex", "gemini", "command")
MAX_JUDGE_VOTES = 9
DEFAULT_MAX_ITERATIONS = 10
DEFAULT_MAX_TIME = 2 * 60 * 60.0
DEFAULT_STALL = 3
DEFAULT_MAX_AGENT_ERRORS = 3
DEFAULT_MAX_FILE_SIZE = 5 * 1024 * 1024
DEFAULT_BRANCH = "outloop/{loop}/{run}"
# how long a run waits at an approval gate before it ends as `approval_timeout`
DEFAULT_APPROVAL_TIMEOUT = 24 * 60 * 60.0
ALWAYS_PROTECTED = ".outloop/**"

EnvPairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AgentConfig:
    """``agent:``: the coding agent that acts each iteration, and how it is run."""

    preset: str
    # argv template with placeholders; required for preset "command",
    # optional override of the executable line for the other presets.
    command: tuple[str, ...] | None = None
    prompt: str | None = None
    # repo-relative path, read from the starting commit
    prompt_file: str | None = None
    model: str | None = None
    # extra arguments appended to a preset's command line
    args: tuple[str, ...] = ()
    timeout: float = DEFAULT_AGENT_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    env: EnvPairs = ()
    # names of variables passed through from outloop's own environment
    pass_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class CIGoalConfig:
    """``goal.ci``: the goal is met when the (required) CI checks on the pushed head pass."""

    provider: str = "github"
    repo: str | None = None
    api_url: str | None = None
    required_checks: tuple[str, ...] = ()
    timeout: float = DEFAULT_CI_TIMEOUT
    # None: the CI goal's defaults (2 minutes, 10 seconds)
    grace: float | None = None
    poll: float | None = None


@dataclass(frozen=True)
class JudgeConfig:
    """A model judging each iteration's commit against a written spec (goals/judge/)."""

    preset: str
    # repo-relative path, read from the starting commit (and protected during the run)
    spec: str
    # named checks, each judged on its own; none: the spec as a whole is one criterion
    criteria: tuple[str, ...] = ()
    votes: int = 1
    timeout: float = DEFAULT_JUDGE_TIMEOUT
    model: str | None = None
    # preset `command`: the judge program (prompt on stdin, verdict JSON on stdout)
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GoalConfig:
    """``goal:``: what must hold for the loop to succeed (a command, CI checks, a judge)."""

    # shell command line (run with /bin/sh -c); exactly one of run / ci is set
    run: str | None = None
    junit: str | None = None
    timeout: float = DEFAULT_GOAL_TIMEOUT
    env: EnvPairs = ()
    pass_env: tuple[str, ...] = ()
    ci: CIGoalConfig | None = None
    # beside `run` (asked only once it passes) or `ci`, or alone
    judge: JudgeConfig | None = None


@dataclass(frozen=True)
class LimitsConfig:
    """``limits:``: when a run gives up without meeting its goal."""

    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_time: float | None = DEFAULT_MAX_TIME
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    stall: int = DEFAULT_STALL
    max_agent_errors: int = DEFAULT_MAX_AGENT_ERRORS


@dataclass(frozen=True)
class CommitConfig:
    """``commit:``: how each iteration is committed."""

    # files larger than this are left out of iteration commits and reported
    max_file_size: int = DEFAULT_MAX_FILE_SIZE


@dataclass(frozen=True)
class CredentialConfig:
    """A secret a loop asks for (``credentials:``, or a preset's), and how the agent gets it."""

    name: str
    via: str = "proxy"
    upstream: str | None = None
    env: str | None = None
    header: str = "Authorization"
    # None: Bearer with an Authorization header, the bare key with any other
    scheme: str | None = None
    allow: tuple[str, ...] = ()
    ca_bundle: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class SandboxPath:
    """A path the loop adds to its sandbox's view, as written (``/abs`` or ``~/rel``)."""

    path: str
    # where it was written, for a refusal made when the run starts
    line: int = 0


@dataclass(frozen=True)
class SandboxConfig:
    """``sandbox:``: where the agent's turn and the goal run, and the extra paths they see."""

    mode: str = "auto"
    # extra paths bound into the view: read-only, and read-write
    read: tuple[SandboxPath, ...] = ()
    write: tuple[SandboxPath, ...] = ()


@dataclass(frozen=True)
class ApproveConfig:
    """Where a run waits for a human (`outloop approve` / `outloop deny`)."""

    # before outloop's first push of the run's branch
    push: bool = False
    # before the pull request is opened or taken out of draft (at the end of the run)
    pr: bool = False
    # names of the loop's credentials the agent gets only once a human approves
    credentials: tuple[str, ...] = ()
    # after every N agent turns, before the next one
    every_iterations: int | None = None
    # once the agents' reported cost exceeds this (US dollars), before the next turn
    over_cost_usd: float | None = None
    timeout: float = DEFAULT_APPROVAL_TIMEOUT

    @property
    def any(self) -> bool:
        return bool(
            self.push
            or self.pr
            or self.credentials
            or self.every_iterations
            or self.over_cost_usd is not None
        )


@dataclass(frozen=True)
class CIFailedTrigger:
    """A workflow run on one of ``branches`` concluded ``failure``."""

    branches: tuple[str, ...]
    # names of the workflows to watch; empty: every workflow of the repository
    workflows: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelTrigger:
    """An issue or pull request got one of ``labels``."""

    labels: tuple[str, ...]


@dataclass(frozen=True)
class TriggersConfig:
    """``on:``: what starts the loop besides a person (who may, unless ``manual`` is false)."""

    # cron expressions, as written (five fields or a macro such as @daily)
    schedule: tuple[str, ...] = ()
    # the IANA zone the schedule's times are in; None is UTC
    timezone: str | None = None
    ci_failed: CIFailedTrigger | None = None
    issues: LabelTrigger | None = None
    pull_request: LabelTrigger | None = None
    manual: bool = True


@dataclass(frozen=True)
class LoopConfig:
    """One validated loop file (``.outloop/<name>.yml``): everything a run of it is set up from."""

    name: str
    # path of the loop file relative to the repo root, e.g. ".outloop/fix.yml"
    path: str
    agent: AgentConfig
    goal: GoalConfig
    description: str | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    commit: CommitConfig = field(default_factory=CommitConfig)
    branch: str = DEFAULT_BRANCH
    push: bool = False
    # open/update a pull request from the branch (implies push)
    pr: bool = False
    # user patterns; ALWAYS_PROTECTED is added by protected_patterns()
    protect: tuple[str, ...] = ()
    credentials: tuple[CredentialConfig, ...] = ()
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    # host:port rules the sandboxed agent and goal may reach through the egress proxy
    egress: tuple[str, ...] = ()
    approve: ApproveConfig = field(default_factory=ApproveConfig)
    # what starts the loop by itself (`on:` in the file); None when the file has no `on:`
    on: TriggersConfig | None = None

    @property
    def triggers(self) -> TriggersConfig:
        """``on:``, or what a loop without one gets: started by hand only."""
        return self.on or TriggersConfig()

    def protected_patterns(self) -> tuple[str, ...]:
        # the judge's spec is what the work is measured against: the agent must not move it
        judged = (self.goal.judge.spec,) if self.goal.judge is not None else ()
        return (ALWAYS_PROTECTED, *judged, *self.protect)
