"""``outloop audit verify`` on a million-event log against ``sha256sum`` of the same file.

The log is written by outloop's own `AuditLog.append`, sealed with a run
key, with the events a real run writes and their real sizes: per iteration
`iteration_started`, two `proxy_request` events for the agent's model calls,
`agent_exited`, `goal_evaluated`, `committed` and `imported`; a
`run_started` first and a `run_stopped` last. It sits in a repository's
git directory with a finished run's `run.json` (its `audit_head`) and the
run's key in the bench's own state directory, so the verify that is timed is
the real one: every link, the MAC of every line, the head, the record's
claims. Both commands read the file from the page cache (one warm-up each),
in a shuffled order per round; the figure is throughput (MB/s), higher is
better. The log is built once and cached under the bench cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    BenchContext,
    Figure,
    Section,
    Stats,
    interleaved_order,
    isolated_env,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

EVENTS = 1_000_000
QUICK_EVENTS = 10_000
RUN_ID = "20261202-120000-bench0"
# bump when the generated log changes, so a cached one is rebuilt
GENERATOR = "1"
TARGET = 0.3

# measured on the shared 2-core development machine before the one-pass verifier
# (commit faae4e2, same generator, 1M events, 376 MB): see `details`
BEFORE = (
    "Before (commit faae4e2): **40.5 s and 2.4 GB** of memory for 1M events (376 MB), "
    "**9.3 MB/s** against `sha256sum`'s 340 MB/s: **0.027×**. The profile: "
    "`json.loads` of every line (9 µs a line, 9 s), a dict per event and every line kept "
    "in memory, a new `hmac` object per line (key set up a million times), the log read "
    "twice (`verify`, then run.json's claims), and per-line Python loops around all of it."
)


def _iteration(i: int, branch: str) -> list[tuple[str, dict[str, object]]]:
    call = {"name": "anthropic", "method": "POST", "host": "api.anthropic.com"}
    return [
        ("iteration_started", {"iteration": i}),
        (
            "proxy_request",
            {**call, "path": "/v1/messages", "request_bytes": 18234, "status": 200,
             "bytes": 5123, "duration_ms": 2345.6},
        ),
        (
            "proxy_request",
            {**call, "path": "/v1/messages", "request_bytes": 22410, "status": 200,
             "bytes": 3127, "duration_ms": 1345.2},
        ),
        (
            "agent_exited",
            {"iteration": i, "exit_code": 0, "duration": 31.52, "error": None,
             "output_bytes": 10234, "cost_usd": 0.0123},
        ),
        (
            "goal_evaluated",
            {"iteration": i, "met": False, "exit_code": 1, "duration": 4.2,
             "failing": ["tests/test_api.py::test_pagination"]},
        ),
        ("committed", {"iteration": i, "commit": f"{i:040x}", "files": 3}),
        ("imported", {"commit": f"{i:040x}", "branch": branch}),
    ]  # fmt: skip


def build_log(root: Path, events: int) -> tuple[Path, Path, dict[str, str]]:
    """(repository, audit log, env with its state dir): cached by size and generator."""
    home = root / "home"
    repo = root / "repo"
    env = isolated_env(home)
    log_path = repo / ".git" / "outloop" / "runs" / RUN_ID / "audit.jsonl"
    done = root / "done"
    if done.is_file() and done.read_text() == GENERATOR:
        return repo, log_path, env
    subprocess.run(["rm", "-rf", str(root)], check=True)
    env = isolated_env(home)
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    _write_log(log_path, events, env["XDG_STATE_HOME"])
    done.write_text(GENERATOR)
    return repo, log_path, env


def _write_log(path: Path, events: int, state_home: str) -> None:
    # the run key goes to the bench's state dir, never the user's
    saved_state = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = state_home
    from outloop_cli.credentials.run_key import new_run_key
    from outloop_cli.store import audit

    # durability changes no byte of the log; 140k fsyncs of `committed` would take minutes
    real_fsync = audit.os.fsync
    audit.os.fsync = lambda fd: None  # type: ignore[assignment]
    try:
        key = new_run_key(RUN_ID)
        limits = audit.AuditLimits(max_bytes=1 << 40, max_events=1 << 40)
        log = audit.AuditLog(path, RUN_ID, limits, seal=key.mac)
        branch = f"outloop/bench/{RUN_ID}"
        log.append(
            "run_started",
            loop="bench",
            branch=branch,
            base="9d3b5c5575eec46a477d05e6700a1c12ac39e505",
            worktree=f"/home/user/.local/state/outloop/worktrees/app-734f748fc9/{RUN_ID}",
            agent="claude -p --output-format stream-json",
            goal="pytest -q",
        )
        written, i = 1, 0
        while written < events - 1:
            i += 1
            for event, fields in _iteration(i, branch)[: events - 1 - written]:
                log.append(event, **fields)
                written += 1
        log.append("run_stopped", reason="max_iterations", detail="out of turns", exit_code=1)
    finally:
        audit.os.fsync = real_fsync  # type: ignore[assignment]
        if saved_state is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = saved_state
    head = log.last_head
    assert head is not None and head.seq == events
    record = {
        "run_id": RUN_ID,
        "loop": "bench",
        "state": "finished",
        "stop_reason": "max_iterations",
        "audit_head": head.to_dict(),
    }
    (path.parent / "run.json").write_text(json.dumps(record))


def _seconds(argv: list[str], cwd: Path, env: dict[str, str], expect: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return elapsed


def collect(ctx: BenchContext) -> Section:
    events = QUICK_EVENTS if ctx.quick else EVENTS
    repeat = 2 if ctx.quick else 7
    built = time.perf_counter()
    repo, log_path, env = build_log(ctx.cache / f"audit-{events}", events)
    built_s = time.perf_counter() - built
    size = log_path.stat().st_size
    megabytes = size / 1e6
    verified = f"ok {RUN_ID}: {events} event(s)"
    cases = {
        "verify": ([str(ctx.outloop), "audit", "verify", RUN_ID], verified),
        "sha256sum": (["sha256sum", str(log_path)], log_path.name),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for name in [*cases, *interleaved_order(list(cases), repeat, ctx.seed)]:
        argv, expect = cases[name]
        seconds = _seconds(argv, repo, env, expect)
        samples[name].append(seconds)
    # the first sample of each was the warm-up
    throughput = {name: [megabytes / s for s in runs[1:]] for name, runs in samples.items()}
    times = {name: Stats.of(runs[1:]) for name, runs in samples.items()}
    figure = Figure(
        name=f"audit verify, {events // 1000}k events"
        if events < EVENTS
        else "audit verify, 1M events",
        measured=Stats.of(throughput["verify"]),
        floor_name="sha256sum",
        floor=Stats.of(throughput["sha256sum"]),
        unit="MB/s",
        target_ratio=TARGET,
        higher_is_better=True,
        note=f"{megabytes:.0f} MB; verify {times['verify'].median:.2f} s, "
        f"sha256sum {times['sha256sum'].median:.2f} s",
    )
    how = (
        f"`outloop audit verify {RUN_ID}` (the installed console script, in the run's "
        f"repository) and `sha256sum` of the same {events:,}-event log ({megabytes:.0f} MB, "
        f"{size / events:.0f} bytes an event), {repeat} interleaved rounds after one warm-up "
        "each. " + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
    )
    details = "\n".join(
        [
            BEFORE,
            "",
            "After: `store/chain_scan.py` proves an intact log in one streaming pass over 4 MB "
            "chunks: a typed msgspec decoder that builds only the chain's fields (~0.5 µs a "
            "line), SHA-256 per line, the MACs from SHA-256 states that took the padded key "
            "once (`RunKey.verify_all`, one constant-time comparison), and the start, stop, "
            "goal and commit events that run.json is checked against, in the same pass; a log "
            "of 16 MB or more is cut at line boundaries into one part per usable core, each "
            "checked in a forked copy of the process (`process/forked.py`) and joined by "
            "sequence and link. Memory: ~0.25 GB instead of 2.4 GB. Per million lines, in one "
            "part (per-stage timers at load 4): MACs 1.0 s, line hashes 0.65 s, decoding "
            "0.55 s, splitting and slicing 0.8 s, the rest 0.35 s; end to end (CLI start-up "
            "included) 4.2–4.3 s against `sha256sum`'s 0.77–0.80 s, 0.18–0.19×, at load 4.5. "
            "Two parts against one, in-process at load 7: 6.8–8.4 s against 10.0–11.0 s. What "
            "is left is hashing every byte twice (the chain's SHA-256 and the MAC's) through "
            "Python's per-line calls, the floor of this design in Python; `sha256sum` hashes "
            "once, in one C loop. On a machine shared with other work both slow down, verify "
            "more (it is memory-heavier), so the ratio moves with the load average above.",
            "",
            "The pass only ever says *verifies*: on any doubt (a failed check, a line it "
            "cannot judge exactly as `json` would) the line-by-line checker runs and names "
            "the first bad line, so a damaged 1M-event log still costs the old ~40 s. "
            "`tests/store/test_audit_fast.py` holds both to the same verdict on every kind "
            "of damage.",
            "",
            f"verify: {times['verify'].median:.2f} s "
            f"({times['verify'].q1:.2f}–{times['verify'].q3:.2f}); sha256sum: "
            f"{times['sha256sum'].median:.2f} s "
            f"({times['sha256sum'].q1:.2f}–{times['sha256sum'].q3:.2f}); "
            f"building the log (cached after the first time): {built_s:.1f} s.",
        ]
    )
    return Section(title="Audit log verification", how=how, figures=(figure,), details=details)
