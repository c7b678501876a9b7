"""The verbs of the CLI as data: which module registers each, and the line ``--help`` lists.

Kept free of typer (and of the verb modules) so that ``outloop --help`` can be
answered from it alone, and ``outloop <verb>`` loads only ``cli/<verb>.py``.
``tests/cli/test_verbs.py`` checks every row against the module it names: the
summary is the first paragraph of the verb's own help, ``group`` and
``hidden`` are what the module registers.
"""

from __future__ import annotations


class Verb:
    """One row of the table (a plain class: ``typing`` alone would cost ``--help`` a tenth)."""

    __slots__ = ("group", "hidden", "module", "plain", "summary")

    def __init__(
        self,
        module: str,
        summary: str,
        *,
        group: bool = False,
        hidden: bool = False,
        plain: bool = False,
    ):
        # cli/<module>.py registers the verb; commands/<module>.py is its twin
        self.module = module
        # the first paragraph of the verb's help, whitespace collapsed: what `--help` lists
        self.summary = summary
        # a command group (`audit verify`, ...): typer lists groups after commands
        self.group = group
        self.hidden = hidden
        # the module imports no typer and declares plain options only
        # (`cli/plain_options.py`): `cli/plain_argv.py` reads its common command lines
        self.plain = plain

    def __repr__(self) -> str:
        return (
            f"Verb({self.module!r}, group={self.group}, hidden={self.hidden}, plain={self.plain})"
        )


ROOT_HELP = "Run coding agents in loops until an outside check passes, in their own git worktree."
VERSION_HELP = "Show the version and exit."

# verb (or command group) → its module; its twin in commands/ has the same name. Where
# the verb is no good as a module name, the module says what it is: `list` would shadow
# the builtin wherever it is imported, `action-report` is no identifier. This order is
# the order of `outloop --help` (groups after commands).
VERBS: dict[str, Verb] = {
    "init": Verb("init", "Write a commented starter loop file to .outloop/."),
    "validate": Verb(
        "validate",
        "Check loop files; print file:line:col: message for every problem.",
        plain=True,
    ),
    "list": Verb("list_loops", "List the loops in this repository."),
    "schema": Verb(
        "schema", "Print the JSON Schema of loop files (or, with --repos, of repos.yml)."
    ),
    "run": Verb("run", "Run loops, each in its own worktree on a scratch branch."),
    "demo": Verb("demo", "Run a real loop on a bundled project with a scripted stand-in agent."),
    "status": Verb(
        "status",
        "List this repository's runs (running, waiting for approval, stopped, crashed, "
        "finished) with iteration, phase, last goal result, cost and age.",
        plain=True,
    ),
    "show": Verb(
        "show",
        "Show one run: its facts, then each iteration's commit, goal result, duration, cost.",
    ),
    "clean": Verb(
        "clean",
        "Remove the worktrees of runs that are over (branches stay); --all drops records too.",
    ),
    "stop": Verb(
        "stop", "Ask a running run to stop; it commits what exists and records `stopped`."
    ),
    "resume": Verb(
        "resume", "Continue a stopped or crashed run from its last committed iteration."
    ),
    "approve": Verb(
        "approve",
        "Approve what a run waits for (state waiting_approval); it goes on at once.",
    ),
    "deny": Verb(
        "deny",
        "Deny what a run waits for (state waiting_approval); the run stops, `approval_denied`.",
    ),
    "say": Verb(
        "say",
        "Hand a note to the run's next agent turn: shown in its prompt as the operator's "
        "words, recorded in the audit log and the iteration's commit. Notes queue in order.",
    ),
    "audit": Verb("audit", "Check and read runs' hash-chained audit logs.", group=True),
    "report": Verb(
        "report",
        "Write a report of one run: JUnit XML, markdown, or a self-contained HTML page.",
    ),
    "ui": Verb("ui", "Serve a live dashboard of runs: open the printed URL in your browser."),
    "secrets": Verb(
        "secrets",
        "Manage keys in the keyring, per workspace (values are never printed).",
        group=True,
    ),
    "credential": Verb(
        "credential",
        "Git's credential helper inside a run; `token NAME` prints a short-lived raw grant.",
    ),
    "pr": Verb(
        "pr",
        "Open or update the pull request of a run's branch (a draft until the goal is met).",
    ),
    "matrix": Verb(
        "matrix",
        "Print the loops as JSON for a CI job matrix (GitHub Actions `strategy.matrix`).",
    ),
    "workflow": Verb(
        "workflow",
        "Compile loops' `on:` (schedule, ci_failed, issues, pull_request, manual) into "
        "GitHub Actions workflows that run outloop's action.",
    ),
    "schedule": Verb(
        "schedule",
        "Run loops' `on.schedule` on this machine: systemd user timers, or cron without systemd.",
        group=True,
    ),
    "action-report": Verb(
        "action_report",
        "For action.yml: step outputs, step summary and annotations from `outloop run --json`.",
        hidden=True,
    ),
}


def help_order() -> list[str]:
    """The verbs in the order ``outloop --help`` lists them: commands, then groups."""
    return [v for v, verb in VERBS.items() if not verb.group] + [
        v for v, verb in VERBS.items() if verb.group
    ]
