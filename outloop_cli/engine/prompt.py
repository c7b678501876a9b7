"""What the agent is told each turn: the loop's prompt, the operator's notes, the last check.

The goal's output is the repository's (and the agent's) text, fenced as data;
an operator note (``outloop say``) is a human's instruction, in a section of
its own that says who said it, fenced so that the note cannot end it early.
"""

from __future__ import annotations

from collections.abc import Sequence

from outloop_cli.store.records import GoalResult

MAX_NAMES = 50


def _fence(text: str) -> str:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def compose_prompt(
    prompt: str,
    *,
    goal_label: str,
    last_goal: GoalResult | None,
    iteration: int,
    max_iterations: int,
    operator_notes: Sequence[tuple[str, str, str]] = (),
    event_block: str | None = None,
) -> str:
    """``operator_notes``: (who, when, text) of each note for this turn, oldest first."""
    parts = [prompt.rstrip("\n")] if prompt.strip() else []
    parts += _operator_section(operator_notes)
    if event_block:
        # the loop's own task first, then the event as quoted data, then outloop's feedback
        parts += ["", event_block]
    if last_goal is None or last_goal.met:
        return "\n".join(parts) + "\n"
    judged = last_goal.judge
    how = (
        f"by a separate judge reading the spec ({goal_label})"
        if judged is not None and last_goal.exit_code is None and not last_goal.log
        else f"by running `{goal_label}` in the repository"
    )
    section = [
        "",
        f"## Feedback from outloop (iteration {iteration} of {max_iterations})",
        "",
        f"The goal is checked from outside {how}; "
        "the loop ends when it succeeds. Right now it does not:",
        f"{last_goal.summary}.",
    ]
    if judged is not None:
        unmet = [c for c in judged.criteria if not c.met]
        section += ["", f"The judge found {len(unmet)} criterion/criteria not met:"]
        section += [f"- {c.criterion}: {c.reason}" for c in unmet[:MAX_NAMES]]
    if last_goal.failing:
        section += ["", f"Failing tests ({len(last_goal.failing)}):"]
        section += [f"- {name}" for name in last_goal.failing[:MAX_NAMES]]
        if len(last_goal.failing) > MAX_NAMES:
            section.append(f"- … and {len(last_goal.failing) - MAX_NAMES} more")
    if last_goal.output_tail.strip():
        fence = _fence(last_goal.output_tail)
        section += ["", "Last lines of its output:", f"{fence}text", last_goal.output_tail, fence]
    return "\n".join(parts + section) + "\n"


def _operator_section(notes: Sequence[tuple[str, str, str]]) -> list[str]:
    if not notes:
        return []
    section = [
        "",
        "## From the operator",
        "",
        "The human supervising this run sent "
        + ("this note" if len(notes) == 1 else f"these {len(notes)} notes, oldest first")
        + " with `outloop say`. These are the operator's own words, not text from the "
        "repository; follow them where they do not conflict with the goal:",
    ]
    for who, when, text in notes:
        fence = _fence(text)
        section += ["", f"Operator `{who}` at {when}:", f"{fence}text", text, fence]
    return section
