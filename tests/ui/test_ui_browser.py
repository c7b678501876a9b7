"""The dashboard in a real browser (Debian's chromium through Playwright), on real runs.

What a user does: open the printed URL, see the runs, watch a live run's iterations
arrive without reloading, read a diff, the chart, the agent's message, the goal's
output and the audit trail, press stop; see a killed runner turn into a crashed run
and resume it. Screenshots are taken at the moments that matter and checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import RepoFactory
from tests.support.browser import chromium, png_facts
from tests.support.dashboard import Dashboard, dashboard_files, running_dashboard, wait_until
from tests.support.e2e import branch_log, only_run, runs_dir, start_runner
from tests.ui.conftest import LiveRun

TIMEOUT_MS = 30_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


def open_dashboard(browser: Browser, ui: Dashboard) -> Page:
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    page.goto(ui.url)
    # the token traded for the cookie: it is gone from the address bar
    assert "token=" not in page.url
    expect(page.locator("#conn")).to_have_text("live")
    page.evaluate("window.__sameDocument = 'yes'")
    page._outloop_errors = errors
    return page


def page_errors(page: Page) -> list[str]:
    return list(getattr(page, "_outloop_errors", []))


def iteration_row(page: Page, n: int) -> Locator:
    return page.locator(f'#iterations tbody tr[data-n="{n}"]')


def check_screenshot(page: Page, path: Path, *, min_rows: int = 150) -> None:
    data = page.screenshot(path=str(path), full_page=True)
    width, height, rows = png_facts(data)
    assert width >= 1200 and height >= 800, (width, height)
    assert rows >= min_rows, f"the screenshot looks empty ({rows} distinct rows)"


def test_a_live_run_updates_in_place_shows_its_work_and_stops_from_the_page(
    browser: Browser, live_run: LiveRun, tmp_path: Path
) -> None:
    live_run.wait_turn(1)
    with running_dashboard(live_run.repo) as ui:
        page = open_dashboard(browser, ui)
        row = page.locator(f'#run-list tbody tr[data-run-id="{live_run.run_id}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("running")
        expect(page.locator("#run-state")).to_contain_text("running")

        live_run.release(1)
        expect(iteration_row(page, 1)).to_be_visible()
        live_run.wait_turn(2)
        live_run.release(2)
        expect(iteration_row(page, 2)).to_be_visible()
        expect(iteration_row(page, 2)).to_contain_text("$0.0200")
        expect(iteration_row(page, 2)).to_contain_text("1202")
        expect(iteration_row(page, 2)).to_contain_text("fail")
        live_run.wait_turn(3)
        # every update came through the event stream: the document was never reloaded
        assert page.evaluate("window.__sameDocument") == "yes"

        expect(page.locator("#final-message")).to_have_text("Turn 2: counter is now 2.")
        expect(page.locator("#goal-tail")).to_contain_text("counter is 2")
        expect(page.locator("#audit tbody")).to_contain_text("run_started")
        expect(page.locator("#audit tbody")).to_contain_text("committed")
        expect(iteration_row(page, 2)).to_contain_text("1 failing of 3 tests")
        failing_cell = iteration_row(page, 2).locator("td").nth(3)
        expect(failing_cell).to_have_text("1")
        assert "test_step_3" in (failing_cell.get_attribute("title") or "")
        expect(iteration_row(page, 3)).to_contain_text("in progress")
        # the chart: failing tests fall 3, 2, 1 over the finished iterations; cost grows
        failing = page.locator("#chart polyline.failing").get_attribute("points") or ""
        cost = page.locator("#chart polyline.cost").get_attribute("points") or ""
        heights = [float(p.split(",")[1]) for p in failing.split()]
        assert len(heights) == 3 and heights[0] < heights[1] < heights[2], failing
        cost_heights = [float(p.split(",")[1]) for p in cost.split()]
        assert len(cost_heights) == 3 and cost_heights[0] > cost_heights[1] > cost_heights[2]

        iteration_row(page, 2).click()
        expect(page.locator("#diff")).to_be_visible()
        expect(page.locator("#diff-files")).to_contain_text("notes/turn-2.md")
        expect(page.locator("#diff-files")).to_contain_text("counter.txt")
        expect(page.locator("#diff-patch .add").first).to_be_visible()
        expect(page.locator("#diff-patch")).to_contain_text("+bumped the counter from 1")

        stop = page.locator("#btn-stop")
        expect(stop).to_be_enabled()
        expect(page.locator("#btn-resume")).to_be_disabled()
        for element in (
            "#run-list",
            "#run-state",
            "#chart",
            "#iterations",
            "#diff-patch",
            "#audit",
        ):
            expect(page.locator(element)).to_be_visible()
        check_screenshot(page, tmp_path / "live.png")

        stop.click()
        expect(page.locator("#action-result")).to_contain_text("stop requested")
        live_run.runner.wait(timeout=60)
        expect(page.locator("#run-state")).to_contain_text("stopped")
        expect(row).to_contain_text("stopped")
        expect(page.locator("#btn-stop")).to_be_disabled()
        expect(page.locator("#btn-resume")).to_be_enabled()
        record = live_run.record()
        assert record["state"] == "finished" and record["stop_reason"] == "stopped"
        expect(page.locator("#audit tbody tr").first).to_contain_text("run_stopped")
        assert page.evaluate("window.__sameDocument") == "yes"
        assert page_errors(page) == []


def test_a_killed_runner_shows_as_crashed_and_resumes_from_the_page(
    browser: Browser, live_run: LiveRun, tmp_path: Path
) -> None:
    live_run.wait_turn(1)
    live_run.release(1)
    live_run.wait_turn(2)
    with running_dashboard(live_run.repo) as ui:
        page = open_dashboard(browser, ui)
        expect(page.locator("#run-state")).to_contain_text("running")
        expect(iteration_row(page, 1)).to_be_visible()

        os.kill(live_run.runner.pid, signal.SIGKILL)
        live_run.runner.wait(timeout=30)
        expect(page.locator("#run-state")).to_contain_text("crashed")
        row = page.locator(f'#run-list tbody tr[data-run-id="{live_run.run_id}"]')
        expect(row).to_contain_text("crashed")
        expect(page.locator("#btn-stop")).to_be_disabled()
        resume = page.locator("#btn-resume")
        expect(resume).to_be_enabled()
        check_screenshot(page, tmp_path / "crashed.png")

        # the killed turn's agent is still waiting: let every turn through from here on
        live_run.release_all()
        resume.click()
        expect(page.locator("#action-result")).to_contain_text("resuming run")
        expect(page.locator("#run-state")).to_contain_text("finished")
        expect(page.locator("#run-facts")).to_contain_text("goal_met")
        record = wait_until(
            lambda: (r := live_run.record())["state"] == "finished" and r, what="the resumed run"
        )
        assert record["stop_reason"] == "goal_met"
        assert page.evaluate("window.__sameDocument") == "yes"
        assert page_errors(page) == []


def test_steer_approve_and_deny_from_the_page_reach_the_run_and_its_audit_log(
    browser: Browser, make_repo: RepoFactory
) -> None:
    repo = make_repo(dashboard_files(None, goal_target=5, approve={"every_iterations": 1}))
    runner = start_runner(repo, "run", "fix")
    try:
        with running_dashboard(repo) as ui:
            page = open_dashboard(browser, ui)
            state = page.locator("#run-state")
            expect(state).to_contain_text("waiting_approval")
            expect(page.locator("#run-facts")).to_contain_text("waiting for")
            expect(page.locator("#btn-stop")).to_be_enabled()
            expect(page.locator("#btn-resume")).to_be_disabled()
            check_screenshot(page, Path(str(repo) + "-waiting.png"))

            page.locator("#steer-text").fill("Operator here: keep the notes short.")
            page.locator("#btn-say").click()
            expect(page.locator("#action-result")).to_contain_text("note queued")
            expect(page.locator("#steer-text")).to_have_value("")

            page.locator("#btn-approve").click()
            expect(page.locator("#action-result")).to_contain_text("approved")
            expect(iteration_row(page, 2)).to_be_visible()
            expect(state).to_contain_text("waiting_approval")
            expect(page.locator("#final-message")).to_contain_text("Read the operator's note.")

            # the page shows the run's next request before a human decides on it
            expect(page.locator("#run-facts")).to_contain_text("after 2 iteration")
            # a denial needs a reason: the page says so and sends nothing
            page.locator("#btn-deny").click()
            expect(page.locator("#action-result")).to_have_text("a denial needs a reason")
            page.locator("#deny-reason").fill("enough for today")
            page.locator("#btn-deny").click()
            expect(page.locator("#action-result")).to_contain_text("denied")
            runner.wait(timeout=60)
            expect(state).to_contain_text("finished")
            expect(page.locator("#run-facts")).to_contain_text("approval_denied")
            audit = page.locator("#audit tbody")
            expect(audit).to_contain_text("approval_denied")
            expect(audit).to_contain_text("(dashboard)")
            assert page.evaluate("window.__sameDocument") == "yes"
            assert page_errors(page) == []
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    record = only_run(repo)
    assert record["stop_reason"] == "approval_denied"
    bodies = [c["body"] for c in branch_log(repo, record["branch"], record["base_commit"])]
    assert any("keep the notes short" in body for body in bodies), bodies
    events = [
        json.loads(line)
        for line in (runs_dir(repo) / record["run_id"] / "audit.jsonl").read_text().splitlines()
    ]
    decisions = [e for e in events if e["event"] in ("approval_granted", "approval_denied")]
    assert [e["event"] for e in decisions] == ["approval_granted", "approval_denied"], events
    assert all(e.get("who", "").endswith("(dashboard)") for e in decisions), decisions


def test_the_docs_screenshot_script_draws_the_dashboard(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "ui_screenshot.py"
    out = tmp_path / "shot.png"
    done = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    width, height, rows = png_facts(out.read_bytes())
    assert (width, height) == (1600, 1250) and rows >= 300, (width, height, rows)
