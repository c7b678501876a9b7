"""The GitHub Action's last step: step outputs, the step summary and annotations from a run.

``action.yml`` runs ``outloop run --json`` (its output fenced with
``::stop-commands::`` so nothing an agent prints is taken as a workflow
command), then ``outloop action-report`` turns the JSON lines into

- step outputs (``$GITHUB_OUTPUT``): ``result``, ``iterations``, ``branch``,
  ``run-id``, ``junit``, ``audit`` — for several loops, comma-separated
  lists (``result`` is ``goal_met`` only when every loop met its goal);
- the markdown summary appended to ``$GITHUB_STEP_SUMMARY`` (under 1 MiB);
- an ``::error`` (or ``::notice`` when met) annotation per run naming its stop reason.

Values are written with the heredoc form of ``$GITHUB_OUTPUT`` and a random
delimiter, so no value can inject another output.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outloop_cli.errors import EXIT_COULD_NOT_RUN, EXIT_USAGE
from outloop_cli.store.records import RunRecord

_EXIT_WORDS = {
    EXIT_USAGE: "bad config or usage",
    EXIT_COULD_NOT_RUN: "could not run",
    130: "interrupted",
}


@dataclass
class ActionReport:
    """What ``outloop action-report`` gives the GitHub Action: outputs, summary, annotations."""

    outputs: dict[str, str]
    summary: str
    annotations: list[str] = field(default_factory=list)


def escape_data(text: str) -> str:
    """Workflow-command message escaping (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The JSON objects ``outloop run --json`` printed, one per line; other lines are skipped."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "run_id" in data:
                runs.append(data)
    return runs


def build_report(runs: Sequence[dict[str, Any]], exit_code: int, out_dir: Path) -> ActionReport:
    from outloop_cli.reports.junit import write_junit
    from outloop_cli.reports.summary import render_summaries

    if not runs:
        word = _EXIT_WORDS.get(exit_code, f"exit {exit_code}")
        return ActionReport(
            outputs={
                "result": "error",
                "iterations": "0",
                "branch": "",
                "run-id": "",
                "junit": "",
                "audit": "",
            },
            summary=f"## ❌ outloop did not run\n\n`outloop run` exited {exit_code} ({word}); "
            "the step's log says why.\n",
            annotations=[
                f"::error title={escape_property('outloop')}::"
                + escape_data(f"outloop run exited {exit_code} ({word}); see the log above")
            ],
        )
    records = [RunRecord.from_dict(run) for run in runs]
    files = [run.get("files") or {} for run in runs]
    if len(records) == 1:
        junit = _copied(out_dir, records[0].run_id, "junit.xml") or str(files[0].get("junit", ""))
        audit = _copied(out_dir, records[0].run_id, "audit.jsonl") or str(files[0].get("audit", ""))
    else:
        combined = out_dir / "junit.xml"
        out_dir.mkdir(parents=True, exist_ok=True)
        write_junit(combined, records)
        junit = str(combined)
        audit = ",".join(
            _copied(out_dir, r.run_id, "audit.jsonl") or str(f.get("audit", ""))
            for r, f in zip(records, files, strict=True)
        )
    reasons = [r.stop_reason.value if r.stop_reason else r.state.value for r in records]
    result = (
        "goal_met"
        if all(r.goal_met for r in records)
        else next(reason for reason, r in zip(reasons, records, strict=True) if not r.goal_met)
    )
    outputs = {
        "result": result,
        "iterations": ",".join(str(len(r.agent_iterations)) for r in records),
        "branch": ",".join(r.branch for r in records),
        "run-id": ",".join(r.run_id for r in records),
        "junit": junit,
        "audit": audit,
    }
    annotations = []
    for record, reason in zip(records, reasons, strict=True):
        title = escape_property(f"outloop {record.loop}: {reason}")
        message = escape_data(
            f"{record.stop_detail or reason} (branch {record.branch}, run {record.run_id})"
        )
        level = "notice" if record.goal_met else "error"
        annotations.append(f"::{level} title={title}::{message}")
    return ActionReport(outputs, render_summaries(records), annotations)


def _copied(out_dir: Path, run_id: str, name: str) -> str:
    path = out_dir / run_id / name
    return str(path) if path.exists() else ""


def write_outputs(path: Path, outputs: dict[str, str]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{secrets.token_hex(12)}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def append_summary(path: Path, text: str) -> None:
    from outloop_cli.reports.summary import MAX_SUMMARY_BYTES

    data = text.encode("utf-8")
    if len(data) >= MAX_SUMMARY_BYTES:
        data = data[: MAX_SUMMARY_BYTES - 64].decode("utf-8", errors="ignore").encode()
        data += b"\n\n*summary cut to fit GitHub's 1 MiB limit*\n"
    with path.open("ab") as handle:
        handle.write(data)
