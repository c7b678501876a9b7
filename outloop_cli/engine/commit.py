"""Iteration commits: what is kept of a turn, under whose name, and what its message says.

Every turn ends as one commit on the run's branch, even a turn that changed
nothing or was interrupted, so the branch alone tells what happened. The
message's trailers (:mod:`outloop_cli.git.trailers`) are what resume and
``outloop audit verify`` read back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import OutloopError
from outloop_cli.git import trailers
from outloop_cli.git.worktree import Identity, Snapshot
from outloop_cli.store.records import AgentResult, GoalResult, IterationRecord
from outloop_cli.timefmt import format_seconds

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.git.worktree import Change


def agent_identity(agent_label: str) -> Identity:
    """The author of iteration commits: the agent, at an address that cannot receive mail."""
    cleaned = "".join(
        ch if ch.isalnum() or ch in "-_." else "-" for ch in agent_label.lower()
    ).strip("-.")
    return Identity(f"{agent_label} via outloop", f"{cleaned or 'agent'}@outloop.invalid")


class Commits:
    """One run's iteration commits; holds the snapshot taken but not yet committed."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._author = agent_identity(ctx.plan.agent.label)
        # the agent is the author; the user who runs the loop commits, as git would
        self._committer: Identity = ctx.plan.repo.committer()
        self._pending: Snapshot | None = None
        # the last commit this process imported into the user's repository
        self._imported: str | None = None
        # an import still under way (``commit(..., import_later=True)``) until ``settle()``
        self._importing: _Import | None = None

    def snapshot(
        self, it: IterationRecord, changes: Sequence[Change], *, agent_head: str | None = None
    ) -> Snapshot:
        """Stage what the turn changed (the guards passed), ready to commit after the goal.

        ``agent_head`` is the agent's own last commit, once the guards scanned
        it and every commit before it: the iteration commit goes on top.
        """
        ctx = self._ctx
        max_file_size = ctx.config.commit.max_file_size
        snapshot = ctx.worktree.snapshot(changes, max_file_size=max_file_size, parent=agent_head)
        self._pending = snapshot
        # if we crash before the commit, resume commits exactly this tree
        ctx.record.pending_tree = snapshot.tree
        it.changed_files = list(snapshot.changed)
        it.skipped_files = dict(snapshot.skipped)
        for path, size in snapshot.skipped.items():
            ctx.note(
                it.n,
                f"not committed: {path} is {size} bytes, over commit.max_file_size "
                f"({max_file_size}); it stays in the worktree",
            )
        return snapshot

    def commit(
        self,
        it: IterationRecord,
        snapshot: Snapshot,
        goal: GoalResult | None,
        *,
        awaiting_ci: bool = False,
        import_later: bool = False,
    ) -> None:
        """Commit the snapshot on the run's branch and bring it into the user's repository.

        ``import_later``: the import (a git process in the user's repository) runs
        while the caller goes on with work of the run's own worktree, and is
        awaited by :meth:`settle`, which the caller must call next.
        """
        self.settle()
        ctx = self._ctx
        # the durable save after the commit says it; the phase alone is not worth a write
        ctx.emit("phase", it.n, "committing", phase="commit", save=False)
        message = commit_message(
            loop=ctx.config.name,
            run_id=ctx.run_id,
            iteration=it.n,
            agent_label=ctx.plan.agent.label,
            goal_label=ctx.plan.verifier.label,
            goal=goal,
            agent=it.agent,
            snapshot=snapshot,
            audit_head=ctx.record.audit_head,
            awaiting_ci=awaiting_ci,
            operator_notes=it.operator_notes,
            trigger=_trigger_line(ctx, it.n),
        )
        # the message quotes the goal (failing test names the agent chose): never a secret
        if ctx.masker is not None:
            message = ctx.masker.mask_text(message)
        sha = ctx.worktree.commit(snapshot, message, author=self._author, committer=self._committer)
        self._pending = None
        it.commit = sha
        ctx.record.pending_tree = None
        # the commit is on the branch, which resume reads; the record follows it soon
        ctx.save_soon()
        ctx.audit("committed", iteration=it.n, commit=sha, files=len(snapshot.changed))
        what = (
            f"{len(snapshot.changed)} file(s)" if snapshot.changed else "no changes (empty commit)"
        )
        work = self._import_work(sha, snapshot.parent)
        if import_later:
            self._importing = _Import(work)
        else:
            self._imported_as(work())
        ctx.emit("committed", it.n, f"committed {sha[:10]}: {what}")

    def settle(self) -> None:
        """Wait for an import begun by ``commit(..., import_later=True)``; raise what it raised."""
        importing = self._importing
        if importing is None:
            return
        try:
            head = importing.wait()
        finally:
            # a Ctrl-C during the wait leaves it pending: the stop that follows waits again
            if importing.done():
                self._importing = None
        self._imported_as(head)

    def _import_work(self, sha: str, parent: str | None) -> Callable[[], str]:
        """The git work of bringing ``sha`` into the user's repository; it gives the new head."""
        ctx = self._ctx
        repo, branch, own_git_dir = ctx.plan.repo, ctx.worktree.branch, ctx.worktree.git_dir()
        previous = self._imported
        # on top of the last import, with its objects in the user's store: a ref update;
        # otherwise (the first import, the agent's own commits under it) a fetch
        fast = previous is not None and parent == previous
        # read here, in the engine's thread: the work itself only runs git
        complete = fast and ctx.worktree.writes_only_to_user_store()

        def work() -> str:
            if (
                fast
                and previous is not None
                and repo.import_commit(branch, sha, previous, complete=complete)
            ):
                return sha
            return repo.import_branch(own_git_dir, branch, sha)

        return work

    def _imported_as(self, head: str) -> None:
        self._imported = head
        self._ctx.audit("imported", commit=head, branch=self._ctx.worktree.branch)

    def commit_pending(self, why: str) -> None:
        """After an interruption, keep what the agent did as a commit: nothing is lost."""
        ctx = self._ctx
        if not ctx.has_record or not ctx.has_worktree or not ctx.record.iterations:
            return
        it = ctx.record.iterations[-1]
        if it.n == 0 or it.commit is not None:
            return
        try:
            snapshot = self._pending or ctx.worktree.snapshot(
                ctx.worktree.changes(), max_file_size=ctx.config.commit.max_file_size
            )
            self.commit(it, snapshot, None)
        except OutloopError as exc:
            ctx.note(it.n, f"could not commit the {why} turn: {exc.message}")


class _Import:
    """One import into the user's repository, run on a thread of its own.

    Its git process works in the user's repository, the engine's next step
    (the check that the goal left nothing behind) in the run's own worktree:
    on two cores both run at once instead of one after the other.
    """

    def __init__(self, work: Callable[[], str]) -> None:
        self._work = work
        self._head: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="outloop-import", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._head = self._work()
        except BaseException as exc:  # handed to the engine's thread by wait()
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._head is not None
        return self._head


def _trigger_line(ctx: RunContext, n: int) -> str | None:
    """What started the run (a trigger, not a person), for the body of its first commit only."""
    if ctx.plan.event.source == "cli":
        return None
    if any(it.commit for it in ctx.record.iterations if it.n != n):
        return None
    return f"Triggered by: {ctx.plan.event.kind} — {ctx.plan.event.summary}"


def import_into_repository(ctx: RunContext, expected: str | None = None) -> None:
    """The run's branch, from outloop's git dir into the user's repository (a fast-forward).

    Everything on outloop's branch has passed the guards: its own commits'
    trees were scanned as the turn's changes, the agent's own commits one by
    one before the iteration commit was put on top of them.
    """
    head = ctx.plan.repo.import_branch(ctx.worktree.git_dir(), ctx.worktree.branch, expected)
    ctx.audit("imported", commit=head, branch=ctx.worktree.branch)


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
    operator_notes: Sequence[Mapping[str, Any]] = (),
    trigger: str | None = None,
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
    judged = goal.judge if goal is not None else None
    if judged is not None:
        for c in judged.criteria:
            mark = "met" if c.met else "not met"
            votes = f" ({c.passed_votes}/{c.votes} votes)" if c.votes > 1 else ""
            lines.append(trailers.one_line(f"Judge: {mark}{votes}: {c.criterion} — {c.reason}"))
    lines.append(
        f"Changed: {len(snapshot.changed)} file(s)" if snapshot.changed else "Changed: nothing"
    )
    for path, size in list(snapshot.skipped.items())[:10]:
        lines.append(f"Not committed (too large, {size} bytes): {path}")
    lines += _operator_lines(operator_notes)
    if trigger is not None:
        lines.append(trailers.one_line(trigger))
    pairs = [
        (trailers.RUN, run_id),
        (trailers.LOOP, loop),
        (trailers.ITERATION, str(iteration)),
        (trailers.GOAL, trailer),
        (trailers.AGENT, trailers.one_line(agent_label)),
    ]
    if agent is not None and agent.cost_usd is not None:
        pairs.append((trailers.COST_USD, f"{agent.cost_usd:.4f}"))
    if agent is not None and (agent.input_tokens is not None or agent.output_tokens is not None):
        pairs.append((trailers.TOKENS, str((agent.input_tokens or 0) + (agent.output_tokens or 0))))
    if judged is not None:
        pairs.append((trailers.JUDGE, trailers.GOAL_PASS if judged.met else trailers.GOAL_FAIL))
        if judged.cost_usd is not None:
            pairs.append((trailers.JUDGE_COST_USD, f"{judged.cost_usd:.4f}"))
        if judged.tokens is not None:
            pairs.append((trailers.JUDGE_TOKENS, str(judged.tokens)))
    if audit_head is not None:
        # the audit chain as it stood before this commit: truncating the log is caught
        pairs.append((trailers.AUDIT_HEAD, f"{audit_head['seq']}:{audit_head['hash']}"))
    return "\n".join([*lines, "", *trailers.render(pairs)]) + "\n"


# a note is quoted whole up to this many lines; the audit log keeps all of it
_NOTE_LINES = 40


def _operator_lines(notes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The operator's notes to this turn, quoted (``> ``): no line of one can pass for a trailer."""
    lines: list[str] = []
    for note in notes:
        who = trailers.one_line(str(note.get("who", "?")))
        when = trailers.one_line(str(note.get("at", "")))
        lines += ["", f"Operator note from {who} at {when}:"]
        text_lines = str(note.get("text", "")).splitlines() or [""]
        for line in text_lines[:_NOTE_LINES]:
            cleaned = "".join(ch if ch == "\t" or ch.isprintable() else " " for ch in line)
            lines.append(f"> {cleaned}".rstrip())
        if len(text_lines) > _NOTE_LINES:
            lines.append(f"> … ({len(text_lines) - _NOTE_LINES} more lines in the audit log)")
    return lines
