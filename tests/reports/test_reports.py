"""Run reports: junit.xml checked against the real JUnit XSDs, summary.md parsed as markdown.

Records are built as the engine builds them (``outloop_cli.store.records``), then
rendered; one end-to-end test runs a real loop and validates the junit.xml
it left in the git directory. How the XSDs are applied is explained in
``tests/xsd/README.md``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest
import xmlschema
from markdown_it import MarkdownIt
from markdown_it.token import Token

from outloop_cli.reports.html import render_html
from outloop_cli.reports.junit import (
    MAX_TEXT_BYTES,
    clean_tail,
    clean_text,
    render_junit,
    write_junit,
)
from outloop_cli.reports.summary import MAX_SUMMARY_BYTES, render_summaries, render_summary
from outloop_cli.store.records import (
    AgentResult,
    GoalResult,
    IterationRecord,
    RunRecord,
    RunState,
    StopReason,
)
from outloop_cli.store.records import TestCase as GoalCase
from outloop_cli.store.records import TestCounts as Counts
from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli, runs_dir

XSD_DIR = Path(__file__).parent / "xsd"
RERUN_TAGS = ("rerunFailure", "rerunError", "flakyFailure", "flakyError")
ANT_ONLY_SUITE_ATTRIBUTES = ("timestamp", "hostname", "id", "package")


# -- schemas ------------------------------------------------------------------------------


@functools.cache
def schema(name: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD_DIR / name))


def validate_everywhere(document: bytes) -> ET.Element:
    """Validate against all three XSDs as tests/xsd/README.md describes; return the root."""
    root = ET.fromstring(document)
    assert root.tag == "testsuites"
    # Jenkins xUnit's junit-10.xsd: the document as it is
    schema("jenkins-junit-10.xsd").validate(document.decode("utf-8"))
    # Ant: everything Ant has words for must be there and well-typed
    ant = copy.deepcopy(root)
    ant.attrib.clear()
    for case in ant.iter("testcase"):
        for child in list(case):
            if child.tag in (*RERUN_TAGS, "system-out", "system-err"):
                case.remove(child)
    schema("ant-junit.xsd").validate(ant)
    # Surefire: each suite as its own report, without Ant's additions
    for suite in root.findall("testsuite"):
        single = copy.deepcopy(suite)
        for name in ANT_ONLY_SUITE_ATTRIBUTES:
            single.attrib.pop(name, None)
        for child in list(single):
            if child.tag in ("system-out", "system-err"):
                single.remove(child)
        schema("surefire-test-report-3.0.xsd").validate(single)
    return root


def test_the_schemas_are_not_lenient() -> None:
    # a check that rejects nothing proves nothing: each schema refuses a broken file
    broken = b'<testsuites><testsuite name="s"><testcase/></testsuite></testsuites>'
    assert not schema("jenkins-junit-10.xsd").is_valid(broken.decode())
    assert not schema("ant-junit.xsd").is_valid(broken.decode())
    assert not schema("surefire-test-report-3.0.xsd").is_valid(
        '<testsuite name="s" tests="1" failures="0" errors="0"><testcase/></testsuite>'
    )


# -- records as the engine makes them ----------------------------------------------------------


def goal(
    met: bool,
    *,
    failing: Sequence[str] = (),
    total: int | None = None,
    output: str = "",
    cases: Sequence[GoalCase] = (),
    timed_out: bool = False,
    n: int = 0,
) -> GoalResult:
    tests = None
    if total is not None:
        tests = Counts(total=total, passed=total - len(failing), failed=len(failing))
    summary = "exit 0 after 0.4s" if met else "exit 1 after 0.4s"
    if tests is not None:
        summary += f"; {tests.passed} passed, {tests.failing} failing of {tests.total} tests"
    return GoalResult(
        met=met,
        exit_code=0 if met else 1,
        duration=0.4,
        timed_out=timed_out,
        summary=summary,
        tests=tests,
        failing=list(failing),
        cases=list(cases),
        signature=f"sig-{len(failing)}-{met}",
        output_tail=output or ("all good\n" if met else f"{len(failing)} failed\n"),
        log=f"logs/iter-{n:03d}-goal.log",
    )


def agent(*, cost: float | None = None, tokens: tuple[int, int] | None = None) -> AgentResult:
    return AgentResult(
        exit_code=0,
        duration=1.5,
        output_bytes=1234,
        cost_usd=cost,
        input_tokens=tokens[0] if tokens else None,
        output_tokens=tokens[1] if tokens else None,
        log="logs/iter-001-agent.log",
    )


def iteration(
    n: int, goal_result: GoalResult | None, agent_result: AgentResult | None = None
) -> IterationRecord:
    return IterationRecord(
        n=n,
        started_at=f"2026-11-22T08:15:{n:02d}+00:00",
        finished_at=f"2026-11-22T08:15:{n + 1:02d}+00:00",
        duration=2.0,
        agent=agent_result if n > 0 else None,
        commit=None if n == 0 else str(n % 10) * 40,
        changed_files=[] if n == 0 else ["src/app.py"],
        goal=goal_result,
    )


def record(
    iterations: Sequence[IterationRecord],
    stop: StopReason | None,
    *,
    loop: str = "fix-tests",
    state: RunState = RunState.FINISHED,
    detail: str | None = None,
    goal_label: str = "pytest -q",
) -> RunRecord:
    return RunRecord(
        run_id="20261122-081500-3fa9c2",
        loop=loop,
        state=state,
        started_at="2026-11-22T08:15:00+00:00",
        branch=f"outloop/{loop}/20261122-081500-3fa9c2",
        base_commit="a" * 40,
        worktree="/home/me/.local/state/outloop/worktrees/repo-0123456789/20261122-081500-3fa9c2",
        repo_root="/home/me/src/repo",
        config_path=f".outloop/{loop}.yml",
        agent_label="claude",
        goal_label=goal_label,
        description="Make the test suite pass",
        stop_reason=stop,
        stop_detail=detail or (stop.value if stop else None),
        exit_code=None if stop is None else (0 if stop is StopReason.GOAL_MET else 1),
        finished_at=None if stop is None else "2026-11-22T08:16:00+00:00",
        duration=60.25,
        host="buildhost",
        outloop_version="0.1.0",
        iterations=list(iterations),
    )


FINAL_CASES = [
    GoalCase("tests.test_math", "test_add", 0.01, "passed"),
    GoalCase("tests.test_math", "test_sub", 0.02, "passed"),
    GoalCase("tests.test_math", "test_div", 0.03, "passed"),
]


def converged() -> RunRecord:
    """Baseline 3 failing, then 2, 1, and green at iteration 3."""
    names = ["tests.test_math::test_add", "tests.test_math::test_sub", "tests.test_math::test_div"]
    return record(
        [
            iteration(0, goal(False, failing=names, total=3, n=0)),
            iteration(
                1,
                goal(False, failing=names[1:], total=3, n=1),
                agent(cost=0.05, tokens=(1000, 200)),
            ),
            iteration(
                2, goal(False, failing=names[2:], total=3, n=2), agent(cost=0.04, tokens=(900, 100))
            ),
            iteration(
                3, goal(True, total=3, cases=FINAL_CASES, n=3), agent(cost=0.03, tokens=(800, 50))
            ),
        ],
        StopReason.GOAL_MET,
        detail="goal met after 3 iterations",
    )


def never_converged() -> RunRecord:
    cases = [
        GoalCase("tests.test_math", "test_add", 0.01, "passed"),
        GoalCase(
            "tests.test_math",
            "test_div",
            0.5,
            "failed",
            "ZeroDivisionError",
            "Traceback…\nZeroDivisionError",
        ),
        GoalCase(
            "tests.test_io",
            "test_read",
            0.1,
            "error",
            "fixture missing",
            "E fixture 'tmp' not found",
        ),
        GoalCase("tests.test_io", "test_slow", 0.0, "skipped", "slow"),
    ]
    failing = ["tests.test_math::test_div", "tests.test_io::test_read"]
    return record(
        [
            iteration(0, goal(False, failing=failing, total=4, n=0)),
            iteration(1, goal(False, failing=failing, total=4, n=1), agent()),
            iteration(
                2,
                goal(False, failing=failing, total=4, cases=cases, n=2, output="FAILED test_div\n"),
                agent(),
            ),
        ],
        StopReason.MAX_ITERATIONS,
        detail="reached max_iterations (2) without meeting the goal",
    )


def baseline_met() -> RunRecord:
    return record(
        [iteration(0, goal(True, n=0))],
        StopReason.GOAL_MET,
        detail="the goal already holds: nothing to do",
    )


def goal_case(root: ET.Element) -> ET.Element:
    suite = root.find("testsuite")
    assert suite is not None
    case = suite.find("testcase")
    assert case is not None
    assert case.get("name", "").startswith("goal: ")
    return case


def properties(root: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in root.iter("property")}


# -- SPEC §6 semantics ------------------------------------------------------------------------


def test_a_run_that_converged_is_a_plain_pass_with_its_earlier_attempts_in_its_output() -> None:
    root = validate_everywhere(render_junit([converged()]))

    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "outloop.fix-tests"
    # the goal check plus the three test cases carried over from the goal's own JUnit
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "0", "0")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "0", "0")
    case = goal_case(root)
    assert case.get("name") == "goal: pytest -q"
    # one child, system-out: every viewer reads that as passed (see test_viewers.py)
    assert [child.tag for child in case] == ["system-out"]
    out = case.findtext("system-out") or ""
    assert out.startswith("goal met at iteration 3 after 3 failed attempts:\n")
    for line in (
        "iteration 0: exit 1 after 0.4s; 0 passed, 3 failing of 3 tests",
        "iteration 1: exit 1 after 0.4s; 1 passed, 2 failing of 3 tests",
        "iteration 2: exit 1 after 0.4s; 2 passed, 1 failing of 3 tests",
        "failing: tests.test_math::test_sub, tests.test_math::test_div",
        "log: logs/iter-001-goal.log",
    ):
        assert line in out
    assert out.index("iteration 0:") < out.index("iteration 1:") < out.index("iteration 2:")
    carried = suite.findall("testcase")[1:]
    assert [(c.get("classname"), c.get("name")) for c in carried] == [
        ("tests.test_math", "test_add"),
        ("tests.test_math", "test_sub"),
        ("tests.test_math", "test_div"),
    ]
    assert all(len(c) == 0 for c in carried)


def test_the_runs_facts_are_properties() -> None:
    root = validate_everywhere(render_junit([converged()]))
    props = properties(root)

    assert props["run_id"] == "20261122-081500-3fa9c2"
    assert props["loop"] == "fix-tests"
    assert props["stop_reason"] == "goal_met"
    assert props["state"] == "finished"
    assert props["iterations"] == "3"
    assert props["branch"] == "outloop/fix-tests/20261122-081500-3fa9c2"
    assert props["base_commit"] == "a" * 40
    assert props["agent"] == "claude"
    assert props["goal"] == "pytest -q"
    assert props["cost_usd"] == "0.1200"
    assert props["tokens"] == str(1000 + 200 + 900 + 100 + 800 + 50)
    assert props["exit_code"] == "0"
    assert props["iteration.0.goal"] == "fail"
    assert props["iteration.0.failing"] == "3"
    assert props["iteration.3.goal"] == "pass"
    assert props["iteration.3.commit"] == "3" * 40
    assert props["iteration.1.cost_usd"] == "0.0500"
    assert props["iteration.1.tokens"] == "1200"
    # nothing unknown is written as "None"
    assert "None" not in props.values()
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("timestamp") == "2026-11-22T08:15:00"
    assert suite.get("hostname") == "buildhost"
    assert suite.get("time") == "60.250"


def test_a_run_that_never_converged_fails_with_earlier_attempts_as_reruns() -> None:
    root = validate_everywhere(render_junit([never_converged()]))

    case = goal_case(root)
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "max_iterations"
    assert failure.get("message") == "reached max_iterations (2) without meeting the goal"
    text = failure.text or ""
    assert "stopped: max_iterations" in text
    # the verdict comes from the final evaluation, with its output
    assert "iteration 2: exit 1" in text
    assert "FAILED test_div" in text
    reruns = case.findall("rerunFailure")
    assert [r.get("message", "").split(":")[0] for r in reruns] == ["iteration 0", "iteration 1"]
    assert case.find("flakyFailure") is None
    suite = root.find("testsuite")
    assert suite is not None
    # goal failed + test_div failed; test_read errored; test_slow skipped
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "5",
        "2",
        "1",
        "1",
    )


def test_goal_junit_cases_are_carried_over_with_their_outcomes() -> None:
    root = validate_everywhere(render_junit([never_converged()]))
    suite = root.find("testsuite")
    assert suite is not None
    by_name = {c.get("name"): c for c in suite.findall("testcase")}

    add = by_name["test_add"]
    assert len(add) == 0
    assert add.get("time") == "0.010"
    div_failure = by_name["test_div"].find("failure")
    assert div_failure is not None
    assert div_failure.get("message") == "ZeroDivisionError"
    assert div_failure.text == "Traceback…\nZeroDivisionError"
    read_error = by_name["test_read"].find("error")
    assert read_error is not None
    assert read_error.get("message") == "fixture missing"
    skipped = by_name["test_slow"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "slow"
    assert by_name["test_read"].get("classname") == "tests.test_io"


def test_only_the_final_iterations_cases_are_carried() -> None:
    run = converged()
    # an earlier evaluation's cases are history, not the verdict
    first_goal = run.iterations[0].goal
    assert first_goal is not None
    first_goal.cases = [GoalCase("old", "test_gone", 0.0, "failed")]
    root = validate_everywhere(render_junit([run]))
    assert "test_gone" not in {c.get("name") for c in root.iter("testcase")}


def test_a_run_whose_goal_held_at_baseline_is_one_green_case() -> None:
    root = validate_everywhere(render_junit([baseline_met()]))

    case = goal_case(root)
    assert [child.tag for child in case] == ["system-out"]
    assert properties(root)["iterations"] == "0"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")


def test_an_agent_error_before_any_goal_check_is_an_error() -> None:
    crashed_agent = AgentResult(
        exit_code=127, duration=0.1, error="not_found", final_message="claude: command not found"
    )
    run = record(
        [IterationRecord(n=1, started_at="2026-11-22T08:15:01+00:00", agent=crashed_agent)],
        StopReason.AGENT_ERROR,
        detail="the agent failed 3 times in a row",
    )
    root = validate_everywhere(render_junit([run]))

    error = goal_case(root).find("error")
    assert error is not None
    assert error.get("type") == "agent_error"
    assert "iteration 1: agent not_found (exit 127)" in (error.text or "")
    assert "claude: command not found" in (error.text or "")


def test_a_run_still_in_progress_claims_no_verdict() -> None:
    run = record(
        [iteration(0, goal(False, failing=["t"], n=0))],
        None,
        state=RunState.RUNNING,
    )
    root = validate_everywhere(render_junit([run]))

    case = goal_case(root)
    assert [child.tag for child in case] == ["rerunFailure", "skipped"]


@pytest.mark.parametrize(
    "stop",
    [StopReason.STALLED, StopReason.MAX_TIME, StopReason.PROTECTED_PATH, StopReason.INTERRUPTED],
)
def test_every_other_stop_is_a_failure_of_the_goal_case(stop: StopReason) -> None:
    run = record(
        [iteration(0, goal(False, n=0)), iteration(1, goal(False, n=1), agent())],
        stop,
    )
    root = validate_everywhere(render_junit([run]))
    failure = goal_case(root).find("failure")
    assert failure is not None
    assert failure.get("type") == stop.value


def test_several_runs_are_several_suites_with_totals() -> None:
    other = never_converged()
    other.loop = "lint"
    root = validate_everywhere(render_junit([converged(), other, baseline_met()]))

    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "outloop.fix-tests",
        "outloop.lint",
        "outloop.fix-tests",
    ]
    assert [s.get("id") for s in suites] == ["0", "1", "2"]
    assert root.get("tests") == str(4 + 5 + 1)
    assert root.get("failures") == "2"
    assert root.get("errors") == "1"


# -- hostile text --------------------------------------------------------------------------------

HOSTILE = (
    "\x1b[31mFAILED\x1b[0m test_x\r\n"
    "\x1b]0;window title\x07progress\x08\x08 done\n"
    "nul\x00 vt\x0b ff\x0c bell\x07 c1\x85 del\x7f\n"
    "cdata end ]]> and <script>alert('x')</script> & &amp;\n"
    "undecodable \udcff byte, not-a-char \ufffe\n"
    "emoji 🎉 and ünïcödé\n"
)


def hostile_run() -> RunRecord:
    cases = [
        GoalCase("t\x1b[1m", "test_\x00bad ]]>", 0.0, "failed", "\x1b[31mboom\x1b[0m", HOSTILE)
    ]
    return record(
        [
            iteration(0, goal(False, failing=["x"], output=HOSTILE, n=0)),
            iteration(1, goal(False, failing=["x"], output=HOSTILE, cases=cases, n=1), agent()),
        ],
        StopReason.STALLED,
        loop="fix\x1b[2J-tests",
        detail="stalled: \x1b[33msame\x1b[0m failure ]]> twice",
        goal_label="pytest -q \x1b[1m<bold>",
    )


def test_ansi_control_characters_and_cdata_ends_come_out_as_readable_legal_xml() -> None:
    document = render_junit([hostile_run()])
    root = validate_everywhere(document)

    texts = [root.get(k, "") for k in root.attrib]
    for element in root.iter():
        texts += [element.text or "", element.tail or "", *element.attrib.values()]
    everything = "\n".join(texts)
    assert "\x1b" not in everything
    assert "[31m" not in everything and "[0m" not in everything and "[2J" not in everything
    assert "window title" not in everything
    for forbidden in ("\x00", "\x07", "\x08", "\x0b", "\x0c", "\x7f", "\x85", "\ufffe", "\r"):
        assert forbidden not in everything, repr(forbidden)
    failure = goal_case(root).find("failure")
    assert failure is not None
    text = failure.text or ""
    # what a terminal would have shown survives, escaped by XML and read back intact
    assert "FAILED test_x\n" in text
    assert "cdata end ]]> and <script>alert('x')</script> & &amp;" in text
    assert "undecodable \ufffd byte, not-a-char \ufffd" in text
    assert "emoji 🎉 and ünïcödé" in text
    assert failure.get("message") == "stalled: same failure ]]> twice"
    assert goal_case(root).get("name") == "goal: pytest -q <bold>"
    assert root.find("testsuite").get("name") == "outloop.fix-tests"  # type: ignore[union-attr]
    carried = root.findall("testsuite/testcase")[1]
    assert carried.get("name") == "test_bad ]]>"
    # the raw bytes hold no CDATA section and no character reference XML forbids
    assert b"<![CDATA[" not in document
    assert (
        re.search(
            rb"&#(x0*[0-8bcef]|x0*1[0-9a-f]|0*(?:[0-8]|1[1-2]|1[4-9]|2[0-9]|3[01]));", document
        )
        is None
    )


def test_clean_text_is_what_a_terminal_shows() -> None:
    assert clean_text("\x1b[1;31mred\x1b[0m") == "red"
    assert clean_text("a\r\nb\rc") == "a\nb\nc"
    assert clean_text("tab\tstays\n") == "tab\tstays\n"
    assert clean_text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean_text("\udc80") == "\ufffd"


def test_clean_tail_cleans_only_what_it_keeps_and_marks_the_cut() -> None:
    assert clean_tail("\x1b[31mshort\x1b[0m\n", 100) == "short\n"
    long = "\x1b[31m" * 50_000 + "".join(f"line {i}\n" for i in range(100)) + "end\n"
    kept = clean_tail(long, 200)
    assert kept.startswith("[… ")
    assert kept.endswith("line 99\nend\n")
    assert "\x1b" not in kept
    assert len(kept.encode()) <= 200
    # mostly escapes: the kept window cleans down to little, and still says it was cut
    noisy = "old output\n" * 10_000 + "\x1b[0m" * 100_000 + "last\n"
    assert clean_tail(noisy, 1000) == "[… earlier output cut …]\nlast\n"


def test_huge_output_is_cut_to_its_end_and_the_file_stays_small() -> None:
    huge = "".join(f"line {i} of noise\n" for i in range(400_000)) + "THE REAL ERROR\n"
    names = [f"tests/test_{i}.py::test_{i}" for i in range(5000)]
    iterations = [iteration(0, goal(False, failing=names, total=5000, output=huge, n=0))]
    iterations += [
        iteration(n, goal(False, failing=names, total=5000, output=huge, n=n), agent())
        for n in range(1, 60)
    ]
    document = render_junit([record(iterations, StopReason.MAX_ITERATIONS)])
    root = validate_everywhere(document)

    failure = goal_case(root).find("failure")
    assert failure is not None
    text = failure.text or ""
    assert len(text.encode()) <= MAX_TEXT_BYTES
    assert text.endswith("THE REAL ERROR\n")
    assert "bytes cut" in text
    # 59 reruns with bounded text each: a few MB at most, not 60 × 7 MB
    assert len(document) < 4 * 1024 * 1024


def test_write_junit_replaces_the_file_atomically_and_readably(tmp_path: Path) -> None:
    target = tmp_path / "junit.xml"
    target.write_text("old")
    write_junit(target, [converged()])

    assert target.read_bytes() == render_junit([converged()])
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]


def test_a_record_read_back_from_run_json_renders_the_same() -> None:
    run = converged()
    again = RunRecord.from_dict(json.loads(json.dumps(run.to_dict())))
    assert render_junit([again]) == render_junit([run])
    assert render_summary(again) == render_summary(run)


def test_why_not_the_junit_xml_package() -> None:
    """The reason given in reports/junit.py, checked against junit-xml itself."""
    import junit_xml  # type: ignore[import-untyped]  # a test dependency, for this comparison

    case = junit_xml.TestCase("goal", stdout="\x1b[31mred\x1b[0m")
    case.add_failure_info("goal not met")
    theirs = junit_xml.to_xml_report_string([junit_xml.TestSuite("outloop.fix", [case])])

    # a `disabled` attribute that junit-10.xsd does not declare
    assert 'disabled="0"' in theirs
    assert not schema("jenkins-junit-10.xsd").is_valid(theirs)
    # only the ESC byte of an ANSI code is dropped; "[31m" stays in the text
    assert "[31mred[0m" in theirs


# -- summary.md ---------------------------------------------------------------------------------


def markdown_tokens(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(text)


def fences(text: str) -> list[Token]:
    return [t for t in markdown_tokens(text) if t.type == "fence"]


def table_rows(text: str, header_first_cell: str) -> list[list[str]]:
    """The body rows of the table whose first header cell is ``header_first_cell``."""
    tokens = markdown_tokens(text)
    rows: list[list[str]] = []
    current: list[str] = []
    in_table = in_body = False
    header: list[str] = []
    for token in tokens:
        if token.type == "table_open":
            in_table, in_body, header, rows_here = True, False, [], []
        elif token.type == "tbody_open":
            in_body = True
        elif token.type == "tr_open":
            current = []
        elif token.type == "inline" and in_table:
            current.append(token.content)
        elif token.type == "tr_close":
            if in_body:
                rows_here.append(current)
            else:
                header = current
        elif token.type == "table_close":
            in_table = False
            if header and header[0] == header_first_cell:
                rows = rows_here
    return rows


def test_summary_has_a_facts_table_and_a_row_per_iteration() -> None:
    text = render_summary(converged())

    assert text.startswith("## ✅ fix-tests: goal met after 3 iterations\n")
    facts = {row[0]: row[1] for row in table_rows(text, "Run")}
    assert facts["Result"] == "`goal_met (exit 0)`"
    assert facts["Iterations"] == "3"
    assert facts["Cost"] == "$0.12"
    assert facts["Tokens"] == "3,050"
    rows = table_rows(text, "#")
    assert [row[0] for row in rows] == ["0 (baseline)", "1", "2", "3"]
    assert [row[4] for row in rows] == ["❌ fail", "❌ fail", "❌ fail", "✅ pass"]
    assert [row[5] for row in rows] == ["3", "2", "1", "0"]
    assert rows[1][1] == "`1111111`"


def test_summary_charts_failing_tests_per_iteration_in_mermaid() -> None:
    chart = [t for t in fences(render_summary(converged())) if t.info == "mermaid"]

    assert len(chart) == 1
    lines = chart[0].content.splitlines()
    assert lines[0] == "xychart-beta"
    assert 'x-axis "iteration" ["0", "1", "2", "3"]' in lines[2]
    assert lines[3].strip() == 'y-axis "failing tests" 0 --> 3'
    assert lines[4].strip() == "bar [3, 2, 1, 0]"


def test_no_chart_without_test_counts() -> None:
    run = record(
        [iteration(0, goal(False, n=0)), iteration(1, goal(True, n=1), agent())],
        StopReason.GOAL_MET,
    )
    assert not [t for t in fences(render_summary(run)) if t.info == "mermaid"]


def test_output_with_backtick_runs_stays_inside_its_fence() -> None:
    output = "before\n```\nnot a fence end\n`````\n```python\nprint('x')\nafter\n"
    run = record(
        [iteration(0, goal(False, failing=["a`b"], output=output, n=0))],
        StopReason.MAX_ITERATIONS,
    )
    text = render_summary(run)

    blocks = [t for t in fences(text) if t.info == "text"]
    assert len(blocks) == 1
    assert blocks[0].content == output
    # nothing after the block was swallowed by it
    assert "### Look at the work" in text
    assert [t.info for t in fences(text)][-1] == "sh"


def test_run_text_is_not_markdown_or_html() -> None:
    run = hostile_run()
    run.description = "<img src=x onerror=alert(1)> | *bold* # head"
    text = render_summary(run)

    raw_html = [t.content for t in markdown_tokens(text) if t.type == "html_block"]
    raw_html += [
        child.content
        for t in markdown_tokens(text)
        if t.type == "inline"
        for child in t.children or []
        if child.type == "html_inline"
    ]
    # the only raw HTML is our own <details> wrapper around the output
    assert raw_html == [
        "<details>\n<summary>Last goal output (iteration 1: exit 1 after 0.4s)</summary>\n",
        "</details>\n",
    ]
    assert "<img" not in text.replace("\\<img", "")
    assert "\x1b" not in text
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<img" not in rendered
    assert "<script>" not in rendered


def test_summary_stays_under_one_mib_with_huge_outputs() -> None:
    huge = "x" * 200 + "\n"
    huge = huge * 30_000 + "```````\n" * 100 + "END\n"
    names = [f"tests/test_{i}.py::test_{'`' * (i % 5)}{i}" for i in range(10_000)]
    iterations = [
        iteration(
            n,
            goal(False, failing=names, total=10_000, output=huge, n=n),
            agent(cost=0.01) if n else None,
        )
        for n in range(2000)
    ]
    run = record(iterations, StopReason.MAX_ITERATIONS, detail="d" * 100_000)
    text = render_summary(run)

    assert len(text.encode()) < MAX_SUMMARY_BYTES
    # still a report: the headline, the facts, and where to look
    assert text.startswith("## ❌ fix-tests: reached the iteration limit after 1999 iterations")
    assert "### Look at the work" in text
    # the rows that fit show the start and the end
    rows = table_rows(text, "#")
    if rows:
        assert rows[0][0] == "0 (baseline)"
        assert rows[-1][0] == "1999"
    blocks = [t for t in fences(text) if t.info == "text"]
    for block in blocks:
        assert block.content.endswith("END\n")


def test_several_runs_share_one_document_under_the_limit() -> None:
    runs = [converged(), never_converged(), baseline_met()]
    text = render_summaries(runs)

    assert text.startswith("# outloop: 3 runs, 2 met their goal\n")
    overview = table_rows(text, "Loop")
    assert [row[1].split(" ")[0] for row in overview] == ["✅", "❌", "✅"]
    assert text.count("### Iterations") == 3
    assert len(text.encode()) < MAX_SUMMARY_BYTES

    # one 2 MB string shared by every iteration, as a record read back would not be
    huge = ("y" * 100 + "\n") * 20_000
    big = [
        record(
            [iteration(n, goal(False, failing=["t"] * 50, output=huge, n=n)) for n in range(300)],
            StopReason.MAX_ITERATIONS,
        )
        for _ in range(30)
    ]
    assert len(render_summaries(big).encode()) < MAX_SUMMARY_BYTES


# -- end to end -----------------------------------------------------------------------------


def test_a_real_runs_junit_xml_is_valid_and_green(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )

    done = run_cli(repo, "run", "fix", "--json", "--out", "reports")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    run_dir = runs_dir(repo) / run_id
    document = (run_dir / "junit.xml").read_bytes()
    root = validate_everywhere(document)

    props = properties(root)
    assert props["run_id"] == run_id
    assert props["stop_reason"] == "goal_met"
    assert props["iterations"] == "2"
    case = goal_case(root)
    assert [child.tag for child in case] == ["system-out"]
    out = case.findtext("system-out") or ""
    assert out.startswith("goal met at iteration 2 after 2 failed attempts:")
    assert out.rstrip().endswith("counter is 2")
    # summary.md is there too and names the run
    summary = (run_dir / "summary.md").read_text()
    assert run_id in summary
    assert [row[0] for row in table_rows(summary, "#")] == ["0 (baseline)", "1", "2"]
    # --out copies them
    assert (repo / "reports" / run_id / "junit.xml").read_bytes() == document


def test_a_real_failing_run_carries_the_goals_own_junit(make_repo: RepoFactory) -> None:
    goal_junit = (
        '<?xml version="1.0"?><testsuite name="unit" tests="2">'
        '<testcase classname="t.m" name="ok" time="0.1"/>'
        '<testcase classname="t.m" name="bad"><failure message="expected &lt;1&gt;">'
        "x ]]&gt; y</failure></testcase></testsuite>"
    )
    goal_script = (
        "import pathlib, shutil, sys\n"
        "pathlib.Path('reports').mkdir(exist_ok=True)\n"
        "shutil.copy('unit.xml', 'reports/junit.xml')\n"
        "print('\\x1b[31m1 failed\\x1b[0m')\n"
        "sys.exit(1)\n"
    )
    repo = make_repo(
        {
            "goal.py": goal_script,
            "unit.xml": goal_junit,
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("noop_agent.py"),
                f"{__import__('sys').executable} goal.py",
                goal__junit="reports/junit.xml",
                limits={"max_iterations": 2, "stall": 5},
            ),
        }
    )
    done = run_cli(repo, "run", "fix", "--json")
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    root = validate_everywhere((runs_dir(repo) / run_id / "junit.xml").read_bytes())

    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["goal: " + cases[0].get("name", "")[6:], "ok", "bad"]
    bad_failure = cases[2].find("failure")
    assert bad_failure is not None
    assert bad_failure.get("message") == "expected <1>"
    assert bad_failure.text == "x ]]> y"
    goal_failure = cases[0].find("failure")
    assert goal_failure is not None
    assert "1 failed" in (goal_failure.text or "")
    assert "[31m" not in (goal_failure.text or "")
    assert len(cases[0].findall("rerunFailure")) == 2
    assert (suite.get("failures"), suite.get("tests")) == ("2", "3")


# -- report.html ----------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_shows_hostile_text_as_text() -> None:
    run = hostile_run()
    run.description = "<img src=x onerror=alert(1)> \" ' &"
    page = render_html(run)
    parsed = _Tags()
    parsed.feed(page)

    assert parsed.tags <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "span", "p", "em",
        "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "ul", "li",
    }  # fmt: skip
    assert parsed.attributes <= {
        "lang",
        "charset",
        "http-equiv",
        "content",
        "name",
        "class",
        "colspan",
    }
    text = "".join(parsed.text)
    assert "<img src=x onerror=alert(1)> \" ' &" in text
    assert "cdata end ]]> and <script>alert('x')</script> & &amp;" in text
    assert "\x1b" not in page and "[31m" not in page
    assert "\x00" not in page


def test_html_is_bounded_and_shows_the_start_and_end_of_long_runs() -> None:
    huge = "z" * 100 + "\n"
    huge = huge * 50_000 + "END\n"
    names = [f"t{i}" for i in range(1000)]
    iterations = [iteration(n, goal(False, failing=names, output=huge, n=n)) for n in range(3000)]
    page = render_html(record(iterations, StopReason.MAX_ITERATIONS))

    assert len(page.encode()) < 2 * 1024 * 1024
    assert "2500 iterations not shown" in page
    assert '<td class="num">2999</td>' in page
    assert "END\n</pre>" in page
    assert "… and 800 more" in page


def test_html_charts_failing_tests_per_iteration_as_inline_svg() -> None:
    page = render_html(converged())
    parsed = _Tags()
    parsed.feed(page)

    assert {"svg", "rect"} <= parsed.tags
    assert "<h2>Failing tests per iteration</h2>" in page
    bars = re.findall(r'<rect x="\d+" y="\d+" width="22" height="(\d+)"', page)
    assert [int(h) for h in bars] == [120, 80, 40, 1]
    assert [
        f"<title>iteration {n}: {f} failing</title>" in page for n, f in enumerate([3, 2, 1, 0])
    ] == [True] * 4
    # nothing in the chart can load or run anything
    assert "href" not in page and "<script" not in page and "url(" not in page
    assert "<svg" not in render_html(baseline_met())


# -- readers ------------------------------------------------------------------------------------


def test_junitparser_reads_the_verdicts_the_way_ci_report_actions_do(tmp_path: Path) -> None:
    """junitparser is the parser of EnricoMi/publish-unit-test-result-action.

    It knows nothing of Surefire's rerun elements, so it must see the final
    verdict alone: a converged loop green, a failed one red, counts as written.
    """
    from junitparser import JUnitXml

    path = tmp_path / "junit.xml"
    write_junit(path, [converged(), never_converged()])
    green, red = list(JUnitXml.fromfile(str(path)))

    assert (green.tests, green.failures, green.errors, green.skipped) == (4, 0, 0, 0)
    assert all(case.is_passed for case in green)
    assert (red.tests, red.failures, red.errors, red.skipped) == (5, 2, 1, 1)
    verdicts = {case.name: [(str(r._tag), r.message) for r in case.result] for case in red}
    assert verdicts == {
        "goal: pytest -q": [("failure", "reached max_iterations (2) without meeting the goal")],
        "test_add": [],
        "test_div": [("failure", "ZeroDivisionError")],
        "test_read": [("error", "fixture missing")],
        "test_slow": [("skipped", "slow")],
    }
    assert green.time == pytest.approx(60.25)
    props = {p.name: p.value for p in green.properties()}  # type: ignore[no-untyped-call]
    assert props["stop_reason"] == "goal_met"


def test_summary_shows_tokens_and_cost_per_iteration() -> None:
    text = render_summary(converged())

    rows = [line for line in text.splitlines() if line.startswith(("| 1 ", "| 3 "))]
    assert "| 1,200 | $0.05 |" in rows[0]
    assert "| 850 | $0.03 |" in rows[1]
