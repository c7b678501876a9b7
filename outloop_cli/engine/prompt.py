"""What the agent is told each turn: the loop's prompt plus how the last check went."""

from __future__ import annotations

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
    event_block: str | None = None,
) -> str:
    parts = [prompt.rstrip("\n")] if prompt.strip() else []
    if event_block:
        # the loop's own task first, then the event as quoted data, then outloop's feedback
        parts += ["", event_block]
    if last_goal is None or last_goal.met:
        return "\n".join(parts) + "\n"
    section = [
        "",
        f"## Feedback from outloop (iteration {iteration} of {max_iterations})",
        "",
        f"The goal is checked from outside by running `{goal_label}` in the repository; "
        "the loop ends when it succeeds. Right now it does not:",
        f"{last_goal.summary}.",
    ]
    if last_goal.failing:
        section += ["", f"Failing tests ({len(last_goal.failing)}):"]
        section += [f"- {name}" for name in last_goal.failing[:MAX_NAMES]]
        if len(last_goal.failing) > MAX_NAMES:
            section.append(f"- … and {len(last_goal.failing) - MAX_NAMES} more")
    if last_goal.output_tail.strip():
        fence = _fence(last_goal.output_tail)
        section += ["", "Last lines of its output:", f"{fence}text", last_goal.output_tail, fence]
    return "\n".join(parts + section) + "\n"
