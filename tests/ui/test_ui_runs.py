"""Which runs the dashboard shows: every run on the machine, by the run index, or --repo's."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.dashboard import dashboard_files, running_dashboard
from tests.support.e2e import run_cli, runs_dir


def _finished(make_repo: RepoFactory, name: str) -> tuple[Path, str]:
    repo = make_repo(dashboard_files(None, goal_target=2), name=name)
    run_cli(repo, "run", "fix", check=True)
    return repo, next(runs_dir(repo).iterdir()).name


def test_from_outside_any_repository_it_lists_every_run_and_a_deleted_one_as_gone(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    client_a, run_a = _finished(make_repo, "client-a")
    client_b, run_b = _finished(make_repo, "client-b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with running_dashboard(elsewhere) as ui:
        ui.log_in()
        listed = {r["id"]: r for r in ui.request("GET", "/api/runs").json()["runs"]}
        assert set(listed) == {run_a, run_b}
        assert listed[run_a]["repo"] == str(client_a) and listed[run_b]["repo"] == str(client_b)
        assert all(r["state"] == "finished" and r["goal"] == "pass" for r in listed.values())
        details = ui.request("GET", f"/api/runs/{run_b}").json()
        assert [it["n"] for it in details["iterations"]] == [0, 1, 2]

        shutil.rmtree(client_b)
        stream = ui.read_events(until='"state": "gone"')
        assert run_b.encode() in stream
        listed = {r["id"]: r for r in ui.request("GET", "/api/runs").json()["runs"]}
        assert (
            listed[run_b]["state"] == "gone" and "no longer exists" in listed[run_b]["stop_detail"]
        )
        assert listed[run_a]["state"] == "finished"
        # acting on a gone run is refused in words, not with a traceback
        reply = ui.post(f"/api/runs/{run_b}/resume", {})
        assert reply.status == 409 and "gone" in reply.json()["message"]
        assert ui.request("GET", f"/api/runs/{run_b}").status == 200


def test_repo_limits_the_dashboard_to_those_repositories(make_repo: RepoFactory) -> None:
    client_a, run_a = _finished(make_repo, "client-a")
    _, run_b = _finished(make_repo, "client-b")
    with running_dashboard(client_a, "--repo", str(client_a)) as ui:
        ui.log_in()
        assert [r["id"] for r in ui.request("GET", "/api/runs").json()["runs"]] == [run_a]
        assert ui.request("GET", f"/api/runs/{run_b}").status == 404
        assert ui.request("GET", "/api/session").json()["repos"] == [str(client_a)]


def test_a_damaged_run_record_is_shown_as_unreadable_not_a_crash(make_repo: RepoFactory) -> None:
    repo, run_id = _finished(make_repo, "client-a")
    (runs_dir(repo) / run_id / "run.json").write_text("{ half a record")
    with running_dashboard(repo) as ui:
        ui.log_in()
        listed = ui.request("GET", "/api/runs").json()["runs"]
        assert [(r["id"], r["state"]) for r in listed] == [(run_id, "unreadable")]
        assert ui.request("GET", f"/api/runs/{run_id}").status == 200
        assert ui.request("GET", f"/api/runs/{run_id}/iterations/1/diff").status == 404
