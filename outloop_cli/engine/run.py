"""The loop: baseline goal check, then agent → snapshot → goal → commit → limits.

The engine owns the order of steps and the stop decision. It reaches the
outside world only through its collaborators: ``workspace`` (git),
``agents`` and ``goals`` (which run processes through ``process``), the run
store and the audit log. It never prints: progress goes to an observer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outloop_cli import __version__
from outloop_cli.agents.base import AgentBackend, TurnContext
from outloop_cli.agents.registry import make_agent
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.source import load_committed_loop, read_committed_prompt
from outloop_cli.engine.access import RunAccess
from outloop_cli.engine.prompt import compose_prompt
from outloop_cli.engine.resume import iteration_commits, reconcile
from outloop_cli.errors import (
    EXIT_COULD_NOT_RUN,
    EXIT_GOAL_NOT_MET,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CouldNotRun,
    OutloopError,
    UsageError,
)
from outloop_cli.git import trailers
from outloop_cli.git.guard import ConfigGuard
from outloop_cli.git.repo import Repository
from outloop_cli.git.worktree import Identity, Snapshot, Worktree
from outloop_cli.goals.base import GoalContext, Verifier
from outloop_cli.goals.registry import make_verifier
from outloop_cli.pathmatch import match_any
from outloop_cli.paths import worktrees_root
from outloop_cli.process.environment import build_env
from outloop_cli.process.leftovers import kill_leftovers
from outloop_cli.process.spawn import ProgramNotFound, run_streamed
from outloop_cli.store.audit import AuditLog, cut_torn_audit_tail
from outloop_cli.store.records import (
    AgentResult,
    GoalResult,
    IterationRecord,
    RunRecord,
    RunState,
    StopReason,
)
from outloop_cli.store.runs import RunPaths, RunStore, loop_lock, new_run_id, run_lock
from outloop_cli.timefmt import format_seconds, now_iso

if TYPE_CHECKING:
    from outloop_cli.engine.forge import RunForge

STOP_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RunOptions:
    start: str = "HEAD"
    max_iterations: int | None = None
    out_dir: Path | None = None
    # allow a second concurrent run of the same loop in the same repository
    parallel: bool = False
    # the workspace policy (default: $OUTLOOP_POLICY or the user's config dir)
    policy: Path | None = None


@dataclass(frozen=True)
class Event:
    """Something the user may want to see; also what the progress view renders."""

    kind: str
    run_id: str
    loop: str
    iteration: int
    max_iterations: int
    message: str = ""
    phase: str | None = None
    elapsed: float = 0.0
    goal: GoalResult | None = None


Observer = Callable[[Event], None]


def _ignore(_: Event) -> None:
    return None


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


def plan_resume(repo: Repository, record: RunRecord, options: RunOptions) -> LoopPlan:
    """Plan the rest of a run from the config at its own starting commit."""
    limit = options.max_iterations or int(record.limits.get("max_iterations") or 0) or None
    plan = plan_loop(
        repo,
        record.loop,
        RunOptions(start=record.base_commit, max_iterations=limit, policy=options.policy),
    )
    done = max((it.n for it in record.iterations if it.commit), default=0)
    if done >= plan.max_iterations:
        raise UsageError(
            f"run {record.run_id} already used its {plan.max_iterations} iteration(s)",
            hint=f"resume with --max-iterations {done + 5} (a new total) to allow more",
        )
    return plan


def plan_loop(repo: Repository, loop: str, options: RunOptions) -> LoopPlan:
    """Read and check everything a run needs from the starting commit, before any side effect."""
    base = repo.resolve_commit(options.start)
    config = load_committed_loop(repo, base, loop)
    prompt = read_committed_prompt(repo, base, config)
    agent = make_agent(config.agent)
    verifier = make_verifier(config.goal)
    _check_executable(agent)
    if config.sandbox == "bwrap":
        from outloop_cli.sandbox.bwrap import bwrap_program

        bwrap_program(build_env().get("PATH"))
    max_iterations = options.max_iterations or config.limits.max_iterations
    access = RunAccess.plan(repo, config, base, options.policy)
    return LoopPlan(repo, config, base, prompt, agent, verifier, max_iterations, access)


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
        raise CouldNotRun(
            f"the agent program `{program}` was not found",
            hint="install it, or fix `agent.command`; the agent's PATH is outloop's own PATH",
        )


def exit_code_for(reason: StopReason) -> int:
    if reason is StopReason.GOAL_MET:
        return EXIT_OK
    if reason is StopReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if reason is StopReason.ERROR:
        return EXIT_COULD_NOT_RUN
    return EXIT_GOAL_NOT_MET


class _Stop(Exception):
    """Internal: ends the loop with a reason; never escapes the engine."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Counters:
    agent_errors: int = 0
    stall: int = 0
    last_goal: GoalResult | None = None
    elapsed_before: float = 0.0
    notes: list[str] = field(default_factory=list)


class LoopRun:
    """One run of one loop, from worktree creation to the stop reason."""

    def __init__(
        self,
        plan: LoopPlan,
        options: RunOptions,
        *,
        observer: Observer = _ignore,
        cancel: threading.Event | None = None,
        interrupt: threading.Event | None = None,
        resume_from: RunRecord | None = None,
    ) -> None:
        self.plan = plan
        self.config = plan.config
        self.options = options
        self.observer = observer
        # set by `outloop stop` (stop reason `stopped`) or, with `interrupt`, by Ctrl-C
        # in another thread (stop reason `interrupted`): either kills the running step
        self.cancel = cancel or threading.Event()
        self.interrupt = interrupt or threading.Event()
        self.store = RunStore(plan.repo.info.common_dir)
        self.run_id = resume_from.run_id if resume_from else new_run_id()
        self.paths: RunPaths = self.store.paths(self.run_id)
        self.audit = AuditLog(self.paths.audit, self.run_id)
        self.worktree: Worktree | None = None
        self.record: RunRecord | None = resume_from
        self._started = time.monotonic()
        # active time of earlier sessions of this run (resume): the time limit spans them all
        self._elapsed_before = resume_from.duration if resume_from else 0.0
        self._first_iteration = 1
        self._stop_after_step = False
        self._stop_watch_done = threading.Event()
        # the run lock says "running" for exactly as long as this process lives;
        # the loop lock keeps a second run of the same loop out (unless --parallel)
        self._locks = contextlib.ExitStack()
        self._guard: ConfigGuard | None = None
        self._masker: Any = None
        self._audit_lock = threading.Lock()
        self._pending: Snapshot | None = None
        # the run's forge (CI goal, push, pr): opened in start/resume, closed in _finish
        self._forge: RunForge | None = None
        self._committer: Identity = plan.repo.committer()
        self._author = Identity(
            f"{plan.agent.label} via outloop", f"{_email_local(plan.agent.label)}@outloop.invalid"
        )

    # -- set-up ---------------------------------------------------------------

    def start(self) -> RunRecord:
        repo = self.plan.repo
        branch = self.config.branch.replace("{loop}", self.config.name).replace(
            "{run}", self.run_id
        )
        if repo.branch_exists(branch):
            raise CouldNotRun(
                f"branch {branch} already exists", hint="choose another `branch` template"
            )
        worktree_path = worktrees_root(repo.info.root, repo.info.common_dir) / self.run_id
        _check_outside(worktree_path, repo)
        with self._locks_released_on_error():
            if not self.options.parallel:
                self._locks.enter_context(
                    loop_lock(repo.info.common_dir, self.config.name, run_id=self.run_id)
                )
            self.store.create(self.run_id)
            self._locks.enter_context(run_lock(self.paths))
            return self._start_in(repo, branch, worktree_path)

    @contextlib.contextmanager
    def _locks_released_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._locks.close()
            raise

    def _start_in(self, repo: Repository, branch: str, worktree_path: Path) -> RunRecord:
        self.worktree = repo.add_worktree(worktree_path, branch, self.plan.base_commit)
        self._guard = ConfigGuard.capture(self.worktree, repo.info.common_dir)
        limits = self.config.limits
        self.record = RunRecord(
            run_id=self.run_id,
            loop=self.config.name,
            state=RunState.RUNNING,
            started_at=now_iso(),
            branch=branch,
            base_commit=self.plan.base_commit,
            worktree=str(worktree_path),
            repo_root=str(repo.info.root),
            config_path=self.config.path,
            agent_label=self.plan.agent.label,
            goal_label=self.plan.verifier.label,
            description=self.config.description,
            limits={
                "max_iterations": self.plan.max_iterations,
                "max_time": limits.max_time,
                "max_cost_usd": limits.max_cost_usd,
                "max_tokens": limits.max_tokens,
                "stall": limits.stall,
                "max_agent_errors": limits.max_agent_errors,
            },
            pid=os.getpid(),
            host=socket.gethostname(),
            outloop_version=__version__,
        )
        self._save()
        self._audit(
            "run_started",
            loop=self.config.name,
            branch=branch,
            base=self.plan.base_commit,
            worktree=str(worktree_path),
            agent=self.plan.agent.label,
            goal=self.plan.verifier.label,
        )
        self._emit("run_started", 0, f"worktree {worktree_path} on branch {branch}")
        self._start_access()
        return self.record

    # -- the forge: push, CI goal, pull request ------------------------------

    def _wants_pr(self) -> bool:
        return self.config.pr

    def _wants_forge(self) -> bool:
        return self.config.goal.ci is not None or self.config.push or self._wants_pr()

    def _open_forge(self) -> None:
        if not self._wants_forge():
            return
        from outloop_cli.engine.forge import RunForge
        from outloop_cli.forges.session import open_forge_session

        repo = self.plan.repo
        remote_url = repo.remote_url("origin")
        if remote_url is None:
            raise CouldNotRun(
                "`push` (forced by a CI goal) needs an `origin` remote",
                hint="add one with `git remote add origin URL`",
            )
        ci = self.config.goal.ci
        provider = ci.provider if ci is not None else "github"
        session = None
        if ci is not None or self._wants_pr():
            secret = self.plan.access.forge_token(
                provider,
                repo.info.root,
                remote_url,
                self.options.policy,
                on_decision=lambda decision: self._audit(decision.event, **decision.audit_fields()),
            )
            session = open_forge_session(
                provider=provider,
                secret=secret,
                remote_url=remote_url,
                repo=ci.repo if ci is not None else None,
                api_url=ci.api_url if ci is not None else None,
                cancel=self.cancel,
                want_pr=self._wants_pr(),
            )
            for warning in session.warnings:
                self._emit("note", 0, warning)
        record = self._require_record()
        access = self.plan.access
        self._forge = RunForge(
            session,
            worktree=self._require_worktree().path,
            branch=record.branch,
            remote_url=remote_url,
            # without a forge session (a plain `push: true`), the broker's git credential
            # helper answers for outloop's push, with a capability the agent never sees
            push_env=(lambda: access.push_env(remote_url))
            if session is None and access.can_push
            else None,
        )
        # a fresh run finds no branch there; a resumed one leases on the commit it pushed
        # last, and a branch someone else pushed to is never overwritten
        self._forge.adopt_remote()
        # a minted App token is no granted secret, but must never be printed either
        self._masker = self.plan.access.masker(extra=self._forge.mask_values())

    def _close_forge(self) -> None:
        """Open or update the pull request (``pr: true``), then revoke a minted App token."""
        forge, self._forge = self._forge, None
        if forge is None:
            return
        record = self._require_record()
        try:
            if self.config.pr and forge.pushed:
                pull = forge.publish_pr(record)
                self._audit("pull_request", number=pull.number, url=pull.url, draft=pull.draft)
                self._emit("note", self._current_n(), f"pull request {pull.url}")
        except OutloopError as exc:
            self._emit("note", self._current_n(), f"could not open the pull request: {exc.message}")
        finally:
            forge.close()
            for warning in forge.warnings:
                self._emit("note", self._current_n(), warning)

    def _push(self, n: int, sha: str) -> None:
        if self._forge is None:
            return
        self._emit("phase", n, "pushing", phase="push")
        result = self._forge.push(sha)
        self._audit(
            "pushed",
            iteration=n,
            commit=sha,
            branch=result.branch,
            previous=result.previous or None,
        )
        self._emit("note", n, f"pushed {result.branch} at {sha[:10]}")

    def resume(self) -> RunRecord:
        """Pick a stopped or crashed run up again from its last committed iteration."""
        with self._locks_released_on_error():
            self._locks.enter_context(run_lock(self.paths))
            if not self.options.parallel:
                self._locks.enter_context(
                    loop_lock(self.plan.repo.info.common_dir, self.config.name, run_id=self.run_id)
                )
            return self._resume_locked()

    def _resume_locked(self) -> RunRecord:
        record = self._require_record()
        repo = self.plan.repo
        if not repo.branch_exists(record.branch):
            raise CouldNotRun(
                f"branch {record.branch} of run {record.run_id} no longer exists",
                hint="a run resumes on its own branch; without it, start a new run",
            )
        path = Path(record.worktree)
        killed = kill_leftovers(record.run_id)
        if killed:
            self._emit(
                "note",
                record.current_iteration,
                f"killed {len(killed)} leftover process(es) of the crashed run",
            )
        if (path / ".git").exists():
            self.worktree = Worktree(path, record.branch)
        else:
            _check_outside(path, repo)
            self.worktree = repo.reattach_worktree(path, record.branch)
        self._guard = ConfigGuard.capture(self.worktree, repo.info.common_dir)
        commits = iteration_commits(repo, record.base_commit, record.branch, record.run_id)
        pending_tree = record.pending_tree
        pending_n = record.current_iteration
        outcome = reconcile(record, commits)
        record.state = RunState.RUNNING
        record.stop_reason = None
        record.stop_detail = None
        record.exit_code = None
        record.finished_at = None
        record.pending_tree = None
        record.pid = os.getpid()
        record.host = socket.gethostname()
        self._save()
        torn = cut_torn_audit_tail(self.paths.audit)
        if torn is not None:
            self._audit("audit_tail_discarded", bytes=torn.length, sha256=torn.sha256)
        self._audit(
            "run_resumed",
            last_committed=outcome.last_committed,
            dropped=outcome.dropped,
            recovered=outcome.recovered,
        )
        self._emit(
            "run_started",
            outcome.last_committed,
            f"resumed on {record.branch} after iteration {outcome.last_committed}",
        )
        self._start_access()
        last = outcome.last_committed
        salvaged = self._salvage(last + 1, pending_tree if pending_n == last + 1 else None)
        self._first_iteration = last + (2 if salvaged else 1)
        return record

    def _start_access(self) -> None:
        """Audit what the policy decided, then start the broker (revoked when the run ends)."""
        access = self.plan.access
        for decision in access.decisions:
            self._audit(decision.event, **decision.audit_fields())
        for note in access.notes:
            self._emit("note", self._current_n(), note)
        access.start(self.run_id, self._audit_from_broker)
        self._locks.callback(access.close)
        self._masker = access.masker()

    def _audit_from_broker(self, event: str, fields: dict[str, Any]) -> None:
        self._audit(event, **fields)

    def _salvage(self, n: int, pending_tree: str | None) -> bool:
        """Commit what an interrupted turn left in the worktree, so it is never lost."""
        worktree = self._require_worktree()
        if pending_tree is not None and worktree.has_tree(pending_tree):
            snapshot = worktree.snapshot_of_tree(pending_tree)
        else:
            changes = worktree.changes()
            if not changes:
                return False
            snapshot = worktree.snapshot(changes, max_file_size=self.config.commit.max_file_size)
        if snapshot.empty:
            return False
        if self.plan.access.scan(worktree.path, snapshot.changed):
            raise CouldNotRun(
                f"the unfinished work of iteration {n} in {worktree.path} contains a secret",
                hint="look at `git status` there, remove it, then resume again",
            )
        record = self._require_record()
        it = IterationRecord(n=n, started_at=now_iso())
        it.changed_files = list(snapshot.changed)
        record.iterations.append(it)
        self._commit(it, snapshot, None)
        worktree.restore(keep=worktree.oversized(self.config.commit.max_file_size))
        it.finished_at = now_iso()
        self._save()
        self._emit("note", n, f"kept the unfinished work of iteration {n} as a commit")
        return True

    # -- the loop -------------------------------------------------------------

    def execute(self) -> RunRecord:
        record = self._require_record()
        counters = _Counters()
        watcher = threading.Thread(target=self._watch_stop_requests, daemon=True)
        watcher.start()
        try:
            try:
                self._loop(counters)
            except _Stop as stop:
                self._finish(stop.reason, stop.detail)
            except KeyboardInterrupt:
                self._commit_pending("interrupted")
                self._finish(StopReason.INTERRUPTED, "interrupted by the user")
            except OutloopError as exc:
                self._finish(StopReason.ERROR, exc.render())
        except BaseException:
            # a bug or a second Ctrl-C while finishing: still leave a readable record
            if record.state is RunState.RUNNING:
                self._finish(StopReason.ERROR, "outloop stopped unexpectedly", reports=False)
            raise
        finally:
            self._stop_watch_done.set()
            self._locks.close()
        return record

    def _watch_stop_requests(self) -> None:
        """``outloop stop`` writes a file; an immediate stop cancels the running step."""
        while not self._stop_watch_done.wait(STOP_POLL_SECONDS):
            try:
                how = self.paths.stop_request.read_text().strip()
            except OSError:
                continue
            if how == "after-step":
                self._stop_after_step = True
            else:
                self.cancel.set()
                return

    def _loop(self, counters: _Counters) -> None:
        record = self._require_record()
        self._open_forge()
        limits = self.config.limits
        previous = record.last_goal
        if previous is None or not any(it.n == 0 for it in record.iterations):
            record.iterations = [it for it in record.iterations if it.n != 0]
            baseline = self._evaluate_baseline()
            counters.last_goal = baseline
            if baseline.met:
                raise _Stop(StopReason.GOAL_MET, "the goal already held before any agent turn")
        else:
            counters.last_goal = previous
            if previous.met:
                raise _Stop(StopReason.GOAL_MET, "the goal was met before the run was resumed")
        for n in range(self._first_iteration, self.plan.max_iterations + 1):
            self._check_before_turn()
            it = IterationRecord(n=n, started_at=now_iso())
            record.iterations.append(it)
            started = time.monotonic()
            self._audit("iteration_started", iteration=n)
            agent_result, out_of_time = self._run_agent(it, counters.last_goal)
            it.agent = agent_result
            self._save(durable=False)
            self._check_git_config(n)
            snapshot = self._snapshot(it)
            if self.cancel.is_set():
                self._commit(it, snapshot, None)
                raise self._cancelled("during the agent's turn")
            if out_of_time:
                self._commit(it, snapshot, None)
                raise _Stop(
                    StopReason.MAX_TIME,
                    f"the time limit ({_fmt(limits.max_time)}) ran out during the agent's turn",
                )
            if self.config.goal.ci is not None:
                # CI judges what was pushed: commit and push first, then wait for the checks
                self._commit(it, snapshot, None, awaiting_ci=True)
                assert it.commit is not None
                self._push(n, it.commit)
                goal = self._evaluate(n)
                it.goal = goal
                if self.cancel.is_set():
                    raise self._cancelled("while waiting for CI")
            else:
                goal = self._evaluate(n)
                if self.cancel.is_set():
                    self._commit(it, snapshot, None)
                    raise self._cancelled("while checking the goal")
                it.goal = goal
                self._commit(it, snapshot, goal)
                if it.commit is not None:
                    self._push(n, it.commit)
            self._restore_after_goal()
            it.finished_at = now_iso()
            it.duration = time.monotonic() - started
            self._save(durable=False)
            # -- limits after the turn --
            counters.agent_errors = counters.agent_errors + 1 if not agent_result.ok else 0
            same_failure = (
                counters.last_goal is not None
                and not goal.met
                and goal.signature == counters.last_goal.signature
            )
            counters.stall = counters.stall + 1 if (snapshot.empty or same_failure) else 0
            counters.last_goal = goal
            if goal.met:
                raise _Stop(StopReason.GOAL_MET, f"the goal was met after {n} iteration(s)")
            if counters.agent_errors >= limits.max_agent_errors:
                raise _Stop(
                    StopReason.AGENT_ERROR,
                    f"the agent failed {counters.agent_errors} turn(s) in a row (last: {agent_result.error})",
                )
            if counters.stall >= limits.stall:
                raise _Stop(
                    StopReason.STALLED,
                    f"{counters.stall} iteration(s) in a row changed nothing or failed exactly as before",
                )
        raise _Stop(
            StopReason.MAX_ITERATIONS,
            f"the goal was not met within {self.plan.max_iterations} iteration(s)",
        )

    def _check_before_turn(self) -> None:
        limits = self.config.limits
        if self.cancel.is_set() or self._stop_after_step or self.paths.stop_request.exists():
            raise self._cancelled("before the next turn")
        left = self._time_left()
        if left is not None and left <= 0:
            raise _Stop(
                StopReason.MAX_TIME, f"the time limit ({_fmt(limits.max_time)}) was reached"
            )
        record = self._require_record()
        cost = record.cost_usd
        if limits.max_cost_usd is not None and cost is not None and cost >= limits.max_cost_usd:
            raise _Stop(
                StopReason.MAX_COST, f"spent ${cost:.2f} of the ${limits.max_cost_usd:.2f} budget"
            )
        tokens = record.tokens
        if limits.max_tokens is not None and tokens is not None and tokens >= limits.max_tokens:
            raise _Stop(
                StopReason.MAX_TOKENS, f"used {tokens} of the {limits.max_tokens} token budget"
            )

    def _cancelled(self, when: str) -> _Stop:
        if self.interrupt.is_set():
            return _Stop(StopReason.INTERRUPTED, f"interrupted by the user {when}")
        return _Stop(StopReason.STOPPED, f"stopped on request (`outloop stop`) {when}")

    def _time_left(self) -> float | None:
        if self.config.limits.max_time is None:
            return None
        return self.config.limits.max_time - self._elapsed()

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._started)

    # -- steps ----------------------------------------------------------------

    def _evaluate_baseline(self) -> GoalResult:
        record = self._require_record()
        it = IterationRecord(n=0, started_at=now_iso())
        record.iterations.append(it)
        started = time.monotonic()
        if self.config.goal.ci is not None:
            self._push(0, self.plan.base_commit)
        goal = self._evaluate(0)
        self._restore_after_goal()
        it.goal = goal
        it.finished_at = now_iso()
        it.duration = time.monotonic() - started
        self._save()
        return goal

    def _run_agent(
        self, it: IterationRecord, last_goal: GoalResult | None
    ) -> tuple[AgentResult, bool]:
        worktree = self._require_worktree()
        n = it.n
        self._emit("phase", n, "agent working", phase="agent")
        prompt_text = compose_prompt(
            self.plan.prompt,
            goal_label=self.plan.verifier.label,
            last_goal=last_goal,
            iteration=n,
            max_iterations=self.plan.max_iterations,
        )
        prompt_file = self.paths.logs / f"iter-{n:03d}-prompt.md"
        prompt_file.write_text(prompt_text)
        state_dir = self.paths.root / "agent-state"
        state_dir.mkdir(exist_ok=True)
        ctx = TurnContext(
            loop=self.config.name,
            run_id=self.run_id,
            iteration=n,
            workdir=worktree.path,
            prompt_text=prompt_text,
            prompt_file=prompt_file,
            state_dir=state_dir,
        )
        invocation = self.plan.agent.invocation(ctx)
        agent_cfg = self.config.agent
        access = self.plan.access
        env = build_env(
            pass_env=agent_cfg.pass_env,
            extra=(*agent_cfg.env, *invocation.env.items()),
            outloop_vars={
                **self._outloop_vars(n, worktree.path, prompt_file),
                **access.agent_env(),
            },
            secret_values=access.secret_values(),
        )
        timeout = agent_cfg.timeout
        left = self._time_left()
        limited_by_run = left is not None and left < timeout
        if left is not None:
            timeout = max(0.1, min(timeout, left))
        log_name = f"logs/iter-{n:03d}-agent.log"
        access.renew(timeout + 60)
        masking = self._masker.stream() if self._masker else None
        try:
            process = run_streamed(
                self._sandboxed(invocation.argv, state_dir),
                cwd=worktree.path,
                env=env,
                log_path=self.paths.root / log_name,
                timeout=timeout,
                idle_timeout=agent_cfg.idle_timeout,
                cancel=self.cancel,
                stdin_data=invocation.stdin,
                transform=masking,
            )
        except ProgramNotFound as exc:
            result = AgentResult(exit_code=None, duration=0.0, error="not_found", log=log_name)
            self._audit_agent(n, result, exc.message)
            return result, False
        if masking is not None:
            # the masker holds back a tail that could still turn into a secret
            with (self.paths.root / log_name).open("ab") as log:
                log.write(masking.flush())
        result = self.plan.agent.interpret(process, ctx)
        out_of_time = process.timed_out and limited_by_run
        if out_of_time:
            result.error = "max_time"
        self._audit_agent(n, result, "")
        return result, out_of_time

    def _sandboxed(self, argv: Sequence[str], state_dir: Path) -> list[str]:
        if self.config.sandbox != "bwrap":
            return list(argv)
        from outloop_cli import paths
        from outloop_cli.sandbox import bwrap as sandbox

        path_env = build_env().get("PATH")
        return sandbox.wrap(
            argv,
            bwrap=sandbox.bwrap_program(path_env),
            path_env=path_env,
            worktree=self._require_worktree().path,
            git_dir=self.plan.repo.info.common_dir,
            writable=[state_dir, *filter(None, [self.plan.access.broker_socket_dir()])],
            hidden=[Path.home(), paths.state_home(), paths.config_home(), paths.data_home()],
        )

    def _audit_agent(self, n: int, result: AgentResult, detail: str) -> None:
        self._audit(
            "agent_exited",
            iteration=n,
            exit_code=result.exit_code,
            duration=round(result.duration, 3),
            error=result.error,
            output_bytes=result.output_bytes,
            cost_usd=result.cost_usd,
        )
        verdict = "ok" if result.ok else f"failed ({result.error})"
        text = f"agent exited {result.exit_code} after {format_seconds(result.duration)}: {verdict}"
        if detail:
            text += f": {detail}"
        self._emit("agent_exited", n, text)

    def _check_git_config(self, n: int) -> None:
        """Before any git command runs again: did the agent plant config or hooks?"""
        if self._guard is None:
            return
        changed = self._guard.changed()
        if not changed:
            return
        self._guard.restore()
        shown = [str(p) for p in changed]
        self._audit("protected_path", iteration=n, paths=shown, kind="git_config")
        raise _Stop(
            StopReason.PROTECTED_PATH,
            "the agent changed git configuration or hooks outside the worktree ("
            + ", ".join(shown)
            + "); they were put back and nothing of this turn was committed",
        )

    def _check_secrets(self, n: int, paths: list[str]) -> None:
        """An iteration whose changes hold a granted secret (in any encoding) is not committed."""
        hits = self.plan.access.scan(self._require_worktree().path, paths)
        if not hits:
            return
        found = [{"path": h.path, "secret": h.name, "form": h.form, "where": h.where} for h in hits]
        self._audit("secret_in_diff", iteration=n, hits=found[:50])
        shown = ", ".join(sorted({f"{h.path} ({h.name}, {h.form})" for h in hits})[:10])
        raise _Stop(
            StopReason.SECRET_IN_DIFF,
            f"the agent's changes contain a secret: {shown}; nothing of this turn was committed",
        )

    def _snapshot(self, it: IterationRecord) -> Snapshot:
        worktree = self._require_worktree()
        changes = worktree.changes()
        patterns = self.config.protected_patterns()
        touched = [c.path for c in changes if match_any(c.path, patterns)]
        if touched:
            snapshot = worktree.snapshot(changes, max_file_size=self.config.commit.max_file_size)
            patch = self.paths.logs / f"iter-{it.n:03d}-protected.patch"
            patch.write_text(worktree.binary_diff(snapshot.parent, snapshot.tree))
            self._audit("protected_path", iteration=it.n, paths=touched[:50])
            raise _Stop(
                StopReason.PROTECTED_PATH,
                "the agent changed protected path(s): "
                + ", ".join(touched[:10])
                + f"; not committed, the change is saved in {patch}",
            )
        self._check_secrets(it.n, [c.path for c in changes])
        snapshot = worktree.snapshot(changes, max_file_size=self.config.commit.max_file_size)
        self._pending = snapshot
        # if we crash before the commit, resume commits exactly this tree
        self._require_record().pending_tree = snapshot.tree
        it.changed_files = list(snapshot.changed)
        it.skipped_files = dict(snapshot.skipped)
        for path, size in snapshot.skipped.items():
            self._emit(
                "note",
                it.n,
                f"not committed: {path} is {size} bytes, over commit.max_file_size "
                f"({self.config.commit.max_file_size}); it stays in the worktree",
            )
        return snapshot

    def _evaluate(self, n: int) -> GoalResult:
        worktree = self._require_worktree()
        self._emit("phase", n, "checking the goal", phase="goal")
        goal_cfg = self.config.goal
        env = build_env(
            pass_env=goal_cfg.pass_env,
            extra=goal_cfg.env,
            outloop_vars={
                "OUTLOOP_RUN": self.run_id,
                "OUTLOOP_LOOP": self.config.name,
                "OUTLOOP_ITERATION": str(n),
            },
        )
        ctx = GoalContext(
            workdir=worktree.path,
            env=env,
            run_dir=self.paths.root,
            iteration=n,
            cancel=self.cancel,
            time_left=self._time_left(),
            transform=self._masker.mask_bytes if self._masker else None,
            **(self._forge.goal_context_fields() if self._forge is not None else {}),
        )
        goal = self.plan.verifier.evaluate(ctx)
        self._audit(
            "goal_evaluated",
            iteration=n,
            met=goal.met,
            exit_code=goal.exit_code,
            duration=round(goal.duration, 3),
            failing=len(goal.failing) if goal.tests is not None else None,
        )
        verdict = "goal met" if goal.met else "goal not met"
        self._emit("goal_evaluated", n, f"{verdict}: {goal.summary}", goal=goal)
        return goal

    def _commit(
        self,
        it: IterationRecord,
        snapshot: Snapshot,
        goal: GoalResult | None,
        *,
        awaiting_ci: bool = False,
    ) -> None:
        worktree = self._require_worktree()
        self._emit("phase", it.n, "committing", phase="commit")
        message = commit_message(
            loop=self.config.name,
            run_id=self.run_id,
            iteration=it.n,
            agent_label=self.plan.agent.label,
            goal_label=self.plan.verifier.label,
            goal=goal,
            agent=it.agent,
            snapshot=snapshot,
            audit_head=self._require_record().audit_head,
            awaiting_ci=awaiting_ci,
        )
        sha = worktree.commit(snapshot, message, author=self._author, committer=self._committer)
        self._pending = None
        it.commit = sha
        self._require_record().pending_tree = None
        self._save()
        self._audit("committed", iteration=it.n, commit=sha, files=len(snapshot.changed))
        what = (
            f"{len(snapshot.changed)} file(s)" if snapshot.changed else "no changes (empty commit)"
        )
        self._emit("committed", it.n, f"committed {sha[:10]}: {what}")

    def _commit_pending(self, why: str) -> None:
        """After an interruption, keep what the agent did as a commit: nothing is lost."""
        record = self.record
        if record is None or self.worktree is None or not record.iterations:
            return
        it = record.iterations[-1]
        if it.n == 0 or it.commit is not None:
            return
        try:
            snapshot = self._pending or self.worktree.snapshot(
                self.worktree.changes(), max_file_size=self.config.commit.max_file_size
            )
            self._commit(it, snapshot, None)
        except OutloopError as exc:
            self._emit("note", it.n, f"could not commit the {why} turn: {exc.message}")

    def _restore_after_goal(self) -> None:
        worktree = self._require_worktree()
        undone = worktree.restore(keep=self._require_record().iterations[-1].skipped_files)
        if undone:
            self._emit(
                "note",
                self._current_n(),
                f"undid {len(undone)} file(s) the goal command left behind",
            )

    # -- finishing ------------------------------------------------------------

    def _finish(self, reason: StopReason, detail: str, *, reports: bool = True) -> None:
        record = self._require_record()
        record.state = RunState.FINISHED
        record.stop_reason = reason
        record.stop_detail = detail
        record.exit_code = exit_code_for(reason)
        record.finished_at = now_iso()
        record.duration = self._elapsed()
        record.phase = "done"
        self._close_forge()
        try:
            self._audit(
                "run_stopped", reason=reason.value, detail=detail, exit_code=record.exit_code
            )
        except OutloopError as exc:
            # the record must still say how the run ended, even when its log is damaged
            record.stop_detail = f"{detail} (and the audit log could not be written: {exc.message})"
        # saved after the last event, so run.json's audit head covers the whole log
        self._save()
        if reports:
            self._write_reports()
        self._emit("run_stopped", self._current_n(), f"{reason.value}: {detail}")

    def _write_reports(self) -> None:
        from outloop_cli.reports.junit import write_junit
        from outloop_cli.reports.summary import render_summary
        from outloop_cli.store.atomic import atomic_write_text

        record = self._require_record()
        write_junit(self.paths.junit, [record])
        # a report for others to read (CI, reviewers), as junit.xml: not mkstemp's 0600
        atomic_write_text(self.paths.summary, render_summary(record), mode=0o644)
        if self.options.out_dir is not None:
            copy_reports(self.paths, self.options.out_dir)

    # -- helpers --------------------------------------------------------------

    def _outloop_vars(self, n: int, workdir: Path, prompt_file: Path) -> dict[str, str]:
        return {
            "OUTLOOP_RUN": self.run_id,
            "OUTLOOP_LOOP": self.config.name,
            "OUTLOOP_ITERATION": str(n),
            "OUTLOOP_WORKDIR": str(workdir),
            "OUTLOOP_PROMPT_FILE": str(prompt_file),
        }

    def _current_n(self) -> int:
        record = self.record
        return record.iterations[-1].n if record and record.iterations else 0

    def _emit(
        self,
        kind: str,
        n: int,
        message: str,
        *,
        phase: str | None = None,
        goal: GoalResult | None = None,
    ) -> None:
        if phase is not None and self.record is not None:
            self.record.phase = phase
            self.record.current_iteration = n
            self.record.duration = self._elapsed()
            # progress for `outloop status`; losing it to a crash costs nothing
            self._save(durable=False)
        self.observer(
            Event(
                kind=kind,
                run_id=self.run_id,
                loop=self.config.name,
                iteration=n,
                max_iterations=self.plan.max_iterations,
                message=message,
                phase=phase,
                elapsed=self._elapsed(),
                goal=goal,
            )
        )

    def _audit(self, event: str, **fields: object) -> None:
        # the broker reports from its own thread
        with self._audit_lock:
            self.audit.append(event, **fields)
            head = self.audit.last_head
            if head is not None and self.record is not None:
                self.record.audit_head = {"seq": head.seq, "hash": head.hash}

    def _save(self, *, durable: bool = True) -> None:
        self.store.save(self._require_record(), durable=durable)

    def _require_record(self) -> RunRecord:
        if self.record is None:
            raise RuntimeError("run not started")
        return self.record

    def _require_worktree(self) -> Worktree:
        if self.worktree is None:
            raise RuntimeError("run not started")
        return self.worktree


def copy_reports(paths: RunPaths, out_dir: Path) -> None:
    import shutil

    target = out_dir / paths.root.name
    target.mkdir(parents=True, exist_ok=True)
    for source in (paths.run_json, paths.junit, paths.summary, paths.audit):
        if source.exists():
            shutil.copy2(source, target / source.name)


def _check_outside(worktree_path: Path, repo: Repository) -> None:
    resolved = worktree_path.resolve()
    for inside in (repo.info.root.resolve(), repo.info.common_dir.resolve()):
        if resolved == inside or inside in resolved.parents:
            raise UsageError(
                f"the worktree location {worktree_path} is inside {inside}",
                hint="set XDG_STATE_HOME to a directory outside the repository",
            )


def _email_local(label: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label.lower()).strip(
        "-."
    )
    return cleaned or "agent"


def _fmt(seconds: float | None) -> str:
    return format_seconds(seconds) if seconds is not None else "none"


def commit_message(
    *,
    loop: str,
    run_id: str,
    iteration: int,
    agent_label: str,
    goal_label: str,
    goal: GoalResult | None,
    agent: AgentResult | None,
    snapshot: Snapshot,
    audit_head: dict[str, object] | None = None,
    awaiting_ci: bool = False,
) -> str:
    if awaiting_ci:
        # CI judges the pushed commit, so its verdict cannot be in the commit itself
        verdict, trailer = "pushed for CI", trailers.GOAL_PENDING
    elif goal is None:
        verdict, trailer = "goal not evaluated", trailers.GOAL_NONE
    elif goal.met:
        verdict, trailer = "goal met", trailers.GOAL_PASS
    else:
        verdict, trailer = "goal not met", trailers.GOAL_FAIL
    lines = [f"outloop({loop}): iteration {iteration} — {verdict}", ""]
    if goal is not None:
        lines.append(f"Goal: {trailers.one_line(goal_label)} — {goal.summary}")
        if goal.failing:
            shown = ", ".join(goal.failing[:5])
            more = len(goal.failing) - 5
            lines.append(f"Failing: {shown}" + (f" (+{more} more)" if more > 0 else ""))
    elif awaiting_ci:
        lines.append(f"Goal: {trailers.one_line(goal_label)} — checked by CI on this commit")
    else:
        lines.append(
            f"Goal: {trailers.one_line(goal_label)} — not evaluated (the run stopped first)"
        )
    if agent is not None:
        state = "ok" if agent.ok else f"failed ({agent.error})"
        agent_line = (
            f"Agent: exit {agent.exit_code} after {format_seconds(agent.duration)}, {state}"
        )
        if agent.cost_usd is not None:
            agent_line += f", ${agent.cost_usd:.4f}"
        lines.append(agent_line)
    lines.append(
        f"Changed: {len(snapshot.changed)} file(s)" if snapshot.changed else "Changed: nothing"
    )
    for path, size in list(snapshot.skipped.items())[:10]:
        lines.append(f"Not committed (too large, {size} bytes): {path}")
    pairs = [
        (trailers.RUN, run_id),
        (trailers.LOOP, loop),
        (trailers.ITERATION, str(iteration)),
        (trailers.GOAL, trailer),
        (trailers.AGENT, agent_label),
    ]
    if agent is not None and agent.cost_usd is not None:
        pairs.append((trailers.COST_USD, f"{agent.cost_usd:.4f}"))
    if agent is not None and (agent.input_tokens is not None or agent.output_tokens is not None):
        pairs.append((trailers.TOKENS, str((agent.input_tokens or 0) + (agent.output_tokens or 0))))
    if audit_head is not None:
        # the audit chain as it stood before this commit: truncating the log is caught
        pairs.append((trailers.AUDIT_HEAD, f"{audit_head['seq']}:{audit_head['hash']}"))
    return "\n".join([*lines, "", *trailers.render(pairs)]) + "\n"
