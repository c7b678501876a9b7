"""``outloop report`` through the real CLI, after real runs of real loops."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

from tests.conftest import RepoFactory
from tests.reports.test_reports import fences, properties, table_rows, validate_everywhere
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli, runs_dir

HOSTILE_GOAL = (
    "import pathlib, sys\n"
    "v = int(pathlib.Path('counter.txt').read_text()) if pathlib.Path('counter.txt').exists() else 0\n"
    "print('\\x1b[31m<script>alert(1)</script> & ]]> ```', v)\n"
    "sys.exit(0 if v >= 2 else 1)\n"
)


def converged_run(make_repo: RepoFactory, **overrides: object) -> tuple[Path, str]:
    repo = make_repo(
        {
            "goal.py": HOSTILE_GOAL,
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"),
                f"{sys.executable} goal.py",
                description="Fix <b>it</b> & make it `pass`",
                **overrides,
            ),
        }
    )
    done = run_cli(repo, "run", "fix", "--json")
    assert done.returncode == 0, done.stderr
    return repo, json.loads(done.stdout)["run_id"]


class _Page(HTMLParser):
    """Collects what a browser would build from the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.open: list[str] = []
        self.rows: list[list[str]] = []
        self.metas: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_body_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "meta":
            self.metas.append(dict(attrs))
            return
        self.open.append(tag)
        if tag == "tbody":
            self._in_body_table = True
        elif tag == "tr" and self._in_body_table:
            self.rows.append([])
        elif tag == "td" and self._in_body_table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open, tag)
        self.open.pop()
        if tag == "tbody":
            self._in_body_table = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_page(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.open == [], parser.open
    return parser


def test_junit_markdown_and_html_of_a_real_run(make_repo: RepoFactory) -> None:
    repo, run_id = converged_run(make_repo)

    junit = run_cli(repo, "report", run_id, "--format", "junit")
    assert junit.returncode == 0, junit.stderr
    root = validate_everywhere(junit.stdout.encode())
    assert properties(root)["run_id"] == run_id
    assert properties(root)["stop_reason"] == "goal_met"
    assert junit.stderr == ""

    # a unique prefix is enough, as for git's short shas
    markdown = run_cli(repo, "report", run_id[:17], "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("## ✅ fix: goal met after 2 iterations\n")
    assert [row[0] for row in table_rows(markdown.stdout, "#")] == ["0 (baseline)", "1", "2"]
    output_blocks = [t for t in fences(markdown.stdout) if t.info == "text"]
    assert "<script>alert(1)</script> & ]]> ``` 2" in output_blocks[0].content

    page = run_cli(repo, "report", run_id, "--format", "html")
    assert page.returncode == 0, page.stderr
    parsed = parse_page(page.stdout)
    assert page.stdout.startswith("<!DOCTYPE html>")
    # self-contained and inert: nothing to fetch, nothing to run
    assert set(parsed.tags) <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "span", "p", "em",
        "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "ul", "li",
    }  # fmt: skip
    assert any(
        m.get("http-equiv") == "Content-Security-Policy"
        and "default-src 'none'" in (m.get("content") or "")
        for m in parsed.metas
    )
    # the iterations table: one row per iteration with the goal's verdict
    iteration_rows = [row for row in parsed.rows if len(row) == 9]
    assert [row[0] for row in iteration_rows] == ["0 (baseline)", "1", "2"]
    assert [row[4] for row in iteration_rows] == ["✘ fail", "✘ fail", "✔ pass"]
    text = "".join(parsed.text)
    # the run's text is shown as text, escaped, not interpreted
    assert "<script>alert(1)</script> & ]]> ``` 2" in text
    assert "Fix <b>it</b> & make it `pass`" in text
    assert "\x1b" not in page.stdout
    assert run_id in text


def test_output_to_a_file_or_a_directory(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo, run_id = converged_run(make_repo)

    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    done = run_cli(repo, "report", run_id, "--format", "html", "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert f"wrote html report of run {run_id} to {target}" in done.stderr
    parse_page(target.read_text())

    done = run_cli(repo, "report", run_id, "-f", "junit", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    written = tmp_path / "out" / f"{run_id}-junit.xml"
    validate_everywhere(written.read_bytes())

    # "-" is stdout, as for most tools
    done = run_cli(repo, "report", run_id, "-f", "md", "-o", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## ✅ fix:")

    done = run_cli(repo, "report", run_id, "--output", str(tmp_path / "missing" / "x.md"))
    assert done.returncode == 2
    assert "directory" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_run_exits_2_and_names_the_recent_runs(make_repo: RepoFactory) -> None:
    repo, run_id = converged_run(make_repo)

    done = run_cli(repo, "report", "nope", "--format", "junit")

    assert done.returncode == 2
    assert done.stdout == ""
    assert "error: no run matches `nope`" in done.stderr
    assert f"hint: recent runs: {run_id} (fix, goal_met)" in done.stderr
    assert "Traceback" not in done.stderr


def test_ambiguous_prefix_and_bad_format_and_no_runs(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )

    done = run_cli(repo, "report", "2", "--format", "html")
    assert done.returncode == 2
    assert "no runs yet" in done.stderr

    first = json.loads(run_cli(repo, "run", "fix", "--json", check=True).stdout)["run_id"]
    second = json.loads(run_cli(repo, "run", "fix", "--json", check=True).stdout)["run_id"]
    done = run_cli(repo, "report", first[:4])
    assert done.returncode == 2
    assert f"`{first[:4]}` matches 2 runs" in done.stderr
    assert first in done.stderr and second in done.stderr

    done = run_cli(repo, "report", second, "--format", "pdf")
    assert done.returncode == 2
    assert "unknown report format `pdf`" in done.stderr
    assert "junit, markdown, html" in done.stderr

    # the default format is markdown, and a suffix of the id works too
    done = run_cli(repo, "report", second[-6:])
    assert done.returncode == 0, done.stderr
    assert second in done.stdout
    assert (runs_dir(repo) / second / "summary.md").is_file()


def test_outside_a_repository(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "report", "x")
    assert done.returncode == 2
    # the run index is asked too, and the message says both places were looked in
    assert "no run matches `x` in the run index" in done.stderr
    assert "not inside a git repository" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_that_died_is_reported_as_crashed(make_repo: RepoFactory) -> None:
    repo, run_id = converged_run(make_repo)
    # what a runner killed with SIGKILL leaves: a "running" record nobody holds
    run_json = runs_dir(repo) / run_id / "run.json"
    data = json.loads(run_json.read_text())
    data.update(state="running", stop_reason=None, stop_detail=None, exit_code=None)
    data["iterations"] = data["iterations"][:2]
    run_json.write_text(json.dumps(data))

    junit = run_cli(repo, "report", run_id, "--format", "junit")
    assert junit.returncode == 0, junit.stderr
    root = validate_everywhere(junit.stdout.encode())
    assert properties(root)["state"] == "crashed"
    case = root.find("testsuite/testcase")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "crashed"

    markdown = run_cli(repo, "report", run_id, "--format", "markdown")
    assert markdown.stdout.startswith("## ❌ fix: crashed after 1 iteration\n")
