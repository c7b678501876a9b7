"""The end of a run: its stop reason and exit code, the forge closed, the last event, the reports.

Whatever ended the run (a limit, a guard, Ctrl-C, an error), the record says
how, the audit log's last event is ``run_stopped``, and ``run.json`` is saved
after it so the head it records covers the whole log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import (
    EXIT_COULD_NOT_RUN,
    EXIT_GOAL_NOT_MET,
    EXIT_INTERRUPTED,
    EXIT_OK,
    OutloopError,
)
from outloop_cli.store.records import RunState, StopReason
from outloop_cli.store.runs import RunPaths
from outloop_cli.timefmt import now_iso

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.engine.forge import ForgeSteps


def exit_code_for(reason: StopReason) -> int:
    if reason is StopReason.GOAL_MET:
        return EXIT_OK
    if reason is StopReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if reason is StopReason.ERROR:
        return EXIT_COULD_NOT_RUN
    # a human denied (or nobody answered) at an approval gate: stopped without the goal,
    # as `outloop stop` does; CI tells them apart by the stop reason, not the exit code
    if reason in (StopReason.APPROVAL_DENIED, StopReason.APPROVAL_TIMEOUT):
        return EXIT_GOAL_NOT_MET
    return EXIT_GOAL_NOT_MET


def finish_run(
    ctx: RunContext, forge: ForgeSteps, reason: StopReason, detail: str, *, reports: bool = True
) -> None:
    record = ctx.record
    record.state = RunState.FINISHED
    record.stop_reason = reason
    record.stop_detail = detail
    record.exit_code = exit_code_for(reason)
    record.finished_at = now_iso()
    record.duration = ctx.elapsed()
    record.phase = "done"
    forge.close()
    try:
        ctx.audit("run_stopped", reason=reason.value, detail=detail, exit_code=record.exit_code)
    except OutloopError as exc:
        # the record must still say how the run ended, even when its log is damaged
        record.stop_detail = f"{detail} (and the audit log could not be written: {exc.message})"
    # saved after the last event, so run.json's audit head covers the whole log
    ctx.save()
    if reports:
        write_reports(ctx)
    ctx.emit("run_stopped", ctx.current_n(), f"{reason.value}: {detail}")


def write_reports(ctx: RunContext) -> None:
    from outloop_cli.reports.junit import write_junit
    from outloop_cli.reports.summary import render_summary
    from outloop_cli.store.atomic import atomic_write_text

    write_junit(ctx.paths.junit, [ctx.record])
    # a report for others to read (CI, reviewers), as junit.xml: not mkstemp's 0600
    atomic_write_text(ctx.paths.summary, render_summary(ctx.record), mode=0o644)
    if ctx.options.out_dir is not None:
        copy_reports(ctx.paths, ctx.options.out_dir)


def copy_reports(paths: RunPaths, out_dir: Path) -> None:
    """``--out DIR``: the run's record, reports and audit log in ``DIR/<run-id>/``."""
    import shutil

    target = out_dir / paths.root.name
    target.mkdir(parents=True, exist_ok=True)
    for source in (paths.run_json, paths.junit, paths.summary, paths.audit):
        if source.exists():
            shutil.copy2(source, target / source.name)
