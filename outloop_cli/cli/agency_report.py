"""What ``outloop demo --agency`` prints: its steps, a table per client, the proof, in plain text."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.cli.formatting import table
from outloop_cli.cli.terminal import err, out

if TYPE_CHECKING:
    from outloop_cli.commands.agency_demo import AgencyDemo, ClientResult, Refusal


def run_agency(directory: Path | None, secrets_from: str) -> int:
    from outloop_cli.commands.agency_demo import run_agency_demo

    err("agency demo: three clients, three CRMs, one nightly loop each, run at once")
    err("agents: a scripted stand-in for an LLM agent (no model, no network beyond 127.0.0.1)")
    demo = run_agency_demo(directory, secrets_mode=secrets_from, step=lambda line: err("  " + line))
    out("")
    out(summary_table(demo))
    out("")
    for line in proof_lines(demo):
        out(line)
    out("")
    out(f"keys: {demo.secrets_backend}")
    out(f"runs: {demo.how_runs_started}")
    out(f"everything is under {demo.root} (logs/ has each run's output)")
    out(
        "watch runs live: `outloop ui` (the dashboard, where installed); `outloop show RUN` for one run"
    )
    if not demo.ok:
        err("agency demo: FAILED — see the table and the logs above")
        return 1
    return 0


def summary_table(demo: AgencyDemo) -> str:
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


def proof_lines(demo: AgencyDemo) -> list[str]:
    a, b = demo.attacker, demo.victim
    lines = [
        f"{a.client} → {b.client} CRM (a lead in {a.client}'s data told its agent to go there):"
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
    rogue = demo.binding_refusal
    if rogue is None:
        lines.append(f"  {a.client}'s loop with its key pointed at {b.client}'s CRM: NOT REFUSED")
    else:
        lines.append(
            f"  {rogue.way}: refused before it started (policy binding, exit {demo.rogue_exit}), "
            f"{_event(rogue)} in {rogue.log}"
        )
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
