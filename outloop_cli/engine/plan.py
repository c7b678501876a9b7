"""Everything a run reads and checks before its first side effect.

A plan is made for every requested loop before any of them starts, so a bad
loop file, a missing agent program or a refused secret ends ``outloop run``
with nothing written: no branch, no worktree, no run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from outloop_cli.agents.base import AgentBackend
from outloop_cli.agents.registry import make_agent
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.source import load_committed_loop, read_committed_prompt
from outloop_cli.engine.access import RunAccess
from outloop_cli.engine.egress import EgressPlan, plan_egress
from outloop_cli.engine.record_check import check_record_against_log
from outloop_cli.engine.trigger import admit, resolve_event
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.git.repo import Repository
from outloop_cli.goals.base import Verifier
from outloop_cli.goals.registry import make_verifier
from outloop_cli.process.environment import build_env
from outloop_cli.sandbox import extra_paths
from outloop_cli.sandbox.availability import SandboxChoice, choose
from outloop_cli.sandbox.extra_paths import ExtraPaths, check_extra_paths
from outloop_cli.store.records import RunRecord
from outloop_cli.store.runs import RunStore
from outloop_cli.triggers.event import TriggerEvent, manual_event


@dataclass(frozen=True)
class RunOptions:
    """What `outloop run` was asked on its command line, before the loop file is read."""

    start: str = "HEAD"
    max_iterations: int | None = None
    out_dir: Path | None = None
    # allow a second concurrent run of the same loop in the same repository
    parallel: bool = False
    # the workspace policy (default: $OUTLOOP_POLICY or the user's config dir)
    policy: Path | None = None
    # the GitHub event payload that started this run ($GITHUB_EVENT_PATH) and its name
    event: Path | None = None
    event_name: str | None = None
    # a local scheduler's start (`schedule`): the latest fire time of the loop's `on.schedule`
    trigger: str | None = None


@dataclass(frozen=True)
class LoopPlan:
    """A loop, validated and ready to start: nothing has been written yet."""

    repo: Repository
    config: LoopConfig
    base_commit: str
    prompt: str
    agent: AgentBackend
    verifier: Verifier
    max_iterations: int
    access: RunAccess
    egress: EgressPlan = field(default_factory=EgressPlan)
    sandbox: SandboxChoice = field(default_factory=lambda: SandboxChoice("none", active=False))
    extra_paths: ExtraPaths = field(default_factory=ExtraPaths)
    # what started the run; a person's `outloop run` unless a trigger says otherwise
    event: TriggerEvent = field(default_factory=manual_event)


def plan_loop(repo: Repository, loop: str, options: RunOptions) -> LoopPlan:
    """Read and check everything a run needs from the starting commit, before any side effect."""
    base = repo.resolve_commit(options.start)
    config = load_committed_loop(repo, base, loop)
    event = resolve_event(
        repo, config, event=options.event, event_name=options.event_name, trigger=options.trigger
    )
    if event.start_commit is not None:
        # a failed CI run or a pull request: the run starts from its commit, and reads the
        # loop from there like from any starting commit
        base = repo.resolve_commit(event.start_commit)
        config = load_committed_loop(repo, base, loop)
    prompt = read_committed_prompt(repo, base, config)
    agent = make_agent(config.agent)
    verifier = make_verifier(config.goal)
    _check_executable(agent)
    _check_judge(config)
    sandbox = choose(config.sandbox.mode, build_env().get("PATH"))
    extra = _extra_paths(repo, config, options) if sandbox.active else ExtraPaths()
    max_iterations = options.max_iterations or config.limits.max_iterations
    access = RunAccess.plan(repo, config, base, options.policy)
    egress = plan_egress(config, repo, options.policy, contained=sandbox.active)
    admit(repo, config, event, parallel=options.parallel)
    return LoopPlan(
        repo,
        config,
        base,
        prompt,
        agent,
        verifier,
        max_iterations,
        access,
        egress=egress,
        sandbox=sandbox,
        extra_paths=extra,
        event=event,
    )


def _check_judge(config: LoopConfig) -> None:
    """The judge's program must be there before the first turn spends anything."""
    if config.goal.judge is None:
        return
    import shutil

    from outloop_cli.goals.judge.presets import program

    name = program(config.goal.judge)
    found = (
        os.access(name, os.X_OK)
        if "/" in name
        else shutil.which(name, path=build_env().get("PATH")) is not None
    )
    if not found:
        raise CouldNotRun(
            f"the judge's program `{name}` was not found",
            hint="install it, or pick another `goal.judge.preset`",
        )


def _extra_paths(repo: Repository, config: LoopConfig, options: RunOptions) -> ExtraPaths:
    """The loop's declared sandbox paths, refused where they reach what must stay out."""
    if not config.sandbox.read and not config.sandbox.write:
        return ExtraPaths()
    from outloop_cli import paths
    from outloop_cli.credentials.policy import default_policy_path, load_policy

    keep_out = [
        (paths.state_home(), "outloop's state (every run's worktree)"),
        (paths.config_home(), "outloop's config (the policy)"),
        (paths.data_home() / "outloop", "outloop's data (the secrets index)"),
        (repo.info.root, "this repository's checkout"),
        (repo.info.common_dir, "this repository's git directory"),
    ]
    policy_path = options.policy or default_policy_path()
    if policy_path.is_file():
        keep_out.append((policy_path, "the policy"))
        for workspace in load_policy(policy_path).workspaces:
            for pattern in workspace.repos:
                if pattern.startswith(("/", "~")):
                    keep_out.append(
                        (_literal_prefix(pattern), f"workspace {workspace.name}'s repositories")
                    )
    return check_extra_paths(
        config.sandbox,
        file=config.path,
        home=Path.home(),
        keep_out=keep_out,
        keep_unwritable=extra_paths.outside_program_fences(),
    )


def _literal_prefix(pattern: str) -> Path:
    """The directory a path pattern's matches all lie under: ``~/src/client-*`` → ``~/src``."""
    parts: list[str] = []
    for part in Path(pattern).expanduser().parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path("/")


def plan_resume(repo: Repository, record: RunRecord, options: RunOptions) -> LoopPlan:
    """Plan the rest of a run from the config at its own starting commit."""
    # the starting commit decides the loop file: taken from the record only when the
    # run's sealed audit log says the same
    check_record_against_log(record, RunStore(repo.info.common_dir).paths(record.run_id))
    limit = options.max_iterations or int(record.limits.get("max_iterations") or 0) or None
    plan = plan_loop(
        repo,
        record.loop,
        RunOptions(start=record.base_commit, max_iterations=limit, policy=options.policy),
    )
    if record.trigger and record.trigger.get("source") != "cli":
        import dataclasses

        # the agent of a resumed run is told the same event as before the stop
        plan = dataclasses.replace(plan, event=TriggerEvent.from_record(record.trigger))
    done = max((it.n for it in record.iterations if it.commit), default=0)
    if done >= plan.max_iterations:
        raise UsageError(
            f"run {record.run_id} already used its {plan.max_iterations} iteration(s)",
            hint=f"resume with --max-iterations {done + 5} (a new total) to allow more",
        )
    return plan


def _check_executable(agent: AgentBackend) -> None:
    import shutil

    program = agent.executable
    path = build_env().get("PATH")
    require = getattr(agent, "require_installed", None)
    if callable(require):
        # a preset knows how its tool is installed, and says so
        require(path)
        return
    if "/" in program:
        found = os.access(program, os.X_OK)
    else:
        found = shutil.which(program, path=path) is not None
    if not found:
        from outloop_cli.config.spec import hide_userinfo

        raise CouldNotRun(
            hide_userinfo(f"the agent program `{program}` was not found"),
            hint="install it, or fix `agent.command`; the agent's PATH is outloop's own PATH",
        )
