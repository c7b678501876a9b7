"""``outloop demo``: a real loop on a bundled project, with a scripted stand-in agent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from outloop_cli.cli.formatting import table
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

if TYPE_CHECKING:
    from outloop_cli.agency.demo import AgencyDemo, ClientResult, Refusal

_commands = CommandSet()
register = _commands.register


@_commands.command("demo")
def demo_command(
    directory: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--dir", help="Where to create the demo repository (default: a new temp dir)."
        ),
    ] = None,
    agency: Annotated[
        bool,
        typer.Option(
            "--agency",
            help="Run the agency example instead: three client repos, each with its own CRM "
            "and key, synced at once; shows that one client's loop cannot reach another's CRM.",
        ),
    ] = False,
    secrets_from: Annotated[
        str,
        typer.Option(
            "--secrets",
            help="With --agency: where the CRM keys are stored. auto: a private Secret "
            "Service if gnome-keyring is installed, else CI variables; keyring; ci.",
        ),
    ] = "auto",
    ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="With --agency: start the dashboard (`outloop ui`) for the three repos before "
            "the runs, print its URL, and leave it serving after the demo.",
        ),
    ] = False,
) -> int:
    """Run a real loop on a bundled project with a scripted stand-in agent."""
    if agency:
        return _run_agency(directory, secrets_from, ui)
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.commands.demo import demo_log, prepare_demo
    from outloop_cli.commands.run import combined_exit_code, execute_plans, plan_loops
    from outloop_cli.engine.plan import RunOptions

    repo = prepare_demo(directory)
    err(f"demo repository: {repo}")
    err(
        "agent: outloop's demo agent, a scripted stand-in for an LLM coding agent (no model, no network)"
    )
    options = RunOptions()
    plans = plan_loops(repo, ["fix-tests"], options)
    with make_progress() as progress:
        outcomes = execute_plans(plans, options, observer=progress)
    for outcome in outcomes:
        record = outcome.record
        err(
            f"\nstopped: {record.stop_reason.value if record.stop_reason else '?'} — {record.stop_detail}"
        )
        err(f"git log of {record.branch}:")
        out(demo_log(repo, record.branch, record.base_commit))
        err(f"summary: {outcome.paths.summary}")
    return combined_exit_code(outcomes)


def _run_agency(directory: Path | None, secrets_from: str, ui: bool) -> int:
    from outloop_cli.commands.demo import run_agency_demo

    err("agency demo: three clients, three CRMs, one nightly loop each, run at once")
    err("agents: a scripted stand-in for an LLM agent (no model, no network beyond 127.0.0.1)")
    demo = run_agency_demo(
        directory, secrets_mode=secrets_from, ui=ui, step=lambda line: err("  " + line)
    )
    out("")
    out(agency_table(demo))
    out("")
    for line in agency_proof(demo):
        out(line)
    out("")
    out(f"keys: {demo.secrets_backend}")
    out(f"runs: {demo.how_runs_started}")
    out(f"everything is under {demo.root} (logs/ has each run's output)")
    if demo.dashboard_url:
        out(f"dashboard: {demo.dashboard_url}")
        out(f"  still serving (pid {demo.dashboard_pid}); stop it with `kill {demo.dashboard_pid}`")
    elif demo.dashboard:
        out(f"dashboard: {demo.dashboard}  (prints a URL with its token: treat it as a password)")
    else:
        out("dashboard: `outloop ui` is not part of this build; `outloop show RUN` shows one run")
    if not demo.ok:
        for client in demo.clients:
            if not client.converged:
                err(f"{client.client}: {client.stop_reason}; its run's output is in {client.log}")
        err("agency demo: FAILED — see the table and the lines above")
        return 1
    return 0


def agency_table(demo: AgencyDemo) -> str:
    rows = [
        [
            c.client,
            str(c.iterations),
            "yes" if c.converged else f"no ({c.stop_reason})",
            f"{c.crm_rows}/{c.leads}",
            str(len(c.refused)),
            c.run_id or "-",
        ]
        for c in demo.clients
    ]
    header = ["client", "iterations", "converged", "CRM rows/leads", "refused attempts", "run"]
    return table(header, rows)


def _event(refusal: Refusal) -> str:
    number = f"#{refusal.seq}" if refusal.seq is not None else "(no number)"
    return f"audit event {number}"


def agency_proof(demo: AgencyDemo) -> list[str]:
    a, b = demo.attacker, demo.victim
    numbers = [_event(r).removeprefix("audit event ") for r in a.refused]
    rogue = demo.binding_refusal
    verdict = "refused (policy)" if a.refused and rogue is not None else "NOT REFUSED"
    where = (
        f"audit events {', '.join(numbers)} in {a.client}'s run" if numbers else "no audit event"
    )
    if rogue is not None:
        where += f", {_event(rogue).removeprefix('audit ')} in refused.jsonl"
    lines = [
        f"{a.client} → {b.client} CRM: {verdict}, {where}",
        f"  (a lead planted in {a.client}'s data told its agent to copy every lead there)",
    ]
    if not a.refused:
        lines.append("  through the proxy: NOT REFUSED — no refusal in the audit log")
    for refusal in a.refused:
        status = f" {refusal.status}" if refusal.status is not None else ""
        lines.append(
            f"  {refusal.way}: refused ({refusal.reason}{status}), {_event(refusal)} "
            f"in {a.client}'s audit log {refusal.log}"
        )
    direct = demo.direct_attempt or "directly: no attempt recorded"
    why = " (the sandbox's network has only loopback)" if a.sandboxed else " (no sandbox)"
    lines.append(f"  {direct}{why}")
    lines.append(
        f"  {b.client}'s CRM saw {b.crm_credentials.get('none', 0)} request(s) without a key, "
        f"{b.crm_credentials.get('wrong', 0)} with another client's key"
    )
    if rogue is None:
        lines.append(f"  {a.client}'s loop with its key pointed at {b.client}'s CRM: NOT REFUSED")
    else:
        lines.append(
            f"  {rogue.way}: refused before it started (policy binding, exit {demo.rogue_exit}), "
            f"{_event(rogue)} in {rogue.log}"
        )
        lines.append(f"    outloop said: {demo.rogue_message}")
    lines.append(
        "each CRM saw only its own client's key: "
        + ", ".join(_own_key_line(c) for c in demo.clients)
    )
    return lines


def _own_key_line(client: ClientResult) -> str:
    seen = client.crm_credentials
    wrong = seen.get("wrong", 0)
    text = f"{client.client} {seen.get('own', 0)} request(s) with its key"
    return text + (f", {wrong} WITH ANOTHER KEY" if wrong else "")
