"""`outloop workflow`: every trigger kind compiled, linted (zizmor, SchemaStore), and checked.

The linters are the real tools, run offline: zizmor (PyPI) at its default
level must find nothing, and check-jsonschema must accept each file against
the GitHub workflow schema it vendors from SchemaStore.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RepoFactory, git
from tests.support.e2e import loop_yaml, run_cli

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ACTION_SHA = "0123456789abcdef0123456789abcdef01234567"
ACTION = f"octo/outloop@{ACTION_SHA}"

TRIGGERS: dict[str, dict[str, Any]] = {
    "schedule": {"schedule": ["0 2 * * *", "@weekly"], "manual": False},
    "schedule-tz": {"schedule": ["30 6 * * MON-FRI"], "timezone": "Europe/Berlin"},
    "ci_failed": {"ci_failed": {"branches": ["main"], "workflows": ["CI", "Lint it's"]}},
    "ci_failed-any": {"ci_failed": {"branches": ["main", "release/*"]}},
    "issues": {"issues": {"labels": ["outloop", 'it\'s "odd"']}, "manual": False},
    "pull_request": {"pull_request": {"labels": ["outloop-fix"]}},
    "manual": {"manual": True},
    "all": {
        "schedule": ["@daily"],
        "ci_failed": {"branches": ["main"]},
        "issues": {"labels": ["outloop"]},
        "pull_request": {"labels": ["outloop-fix"]},
    },
}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    assert found, f"{name} is a dev dependency (pip install -e '.[dev]')"
    return found


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def schemastore(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def loop_file(on: dict[str, Any], **extra: Any) -> str:
    return loop_yaml(["my-agent", "{prompt_file}"], "pytest -q", on=on, **extra)


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    files = {f".outloop/{name}.yml": loop_file(on) for name, on in TRIGGERS.items()}
    files[".outloop/plain.yml"] = loop_yaml(["my-agent"], "pytest -q")
    files[".github/workflows/ci.yml"] = "name: CI\non: push\njobs: {}\n"
    files[".github/workflows/lint.yml"] = "on: push\njobs: {}\n"
    return make_repo(files)


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    # YAML 1.1 (PyYAML) reads the bare `on` key as True, as it does in every workflow
    data["on"] = data.pop(True)
    return data


def test_every_trigger_kind_compiles_and_passes_zizmor_and_schemastore(repo: Path) -> None:
    done = run_cli(repo, "workflow", "--write", "--action", ACTION, "--action-version", "v1.2.3")
    assert done.returncode == 0, done.stderr
    written = sorted((repo / ".github/workflows").glob("outloop-*.yml"))
    # every loop with an `on:` key, and not the plain loop
    assert sorted(p.stem for p in written) == sorted(f"outloop-{name}" for name in TRIGGERS)
    linted = zizmor(*written)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "No findings to report" in linted.stdout
    checked = schemastore(*written)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_linters_catch_what_the_generator_avoids(repo: Path, tmp_path: Path) -> None:
    """The control: an event's text spliced into `run:`, an unpinned action, broad permissions."""
    run_cli(repo, "workflow", "issues", "--write", "--action", ACTION, check=True)
    text = (repo / ".github/workflows/outloop-issues.yml").read_text()
    bad = tmp_path / "bad.yml"
    bad.write_text(
        text.replace("    permissions:\n      contents: read\n", "    permissions: write-all\n")
        .replace(f"@{ACTION_SHA}", "@v1")
        .replace(
            "      - name: Run the loop",
            '      - run: echo "${{ github.event.issue.title }}"\n      - name: Run the loop',
        )
    )
    found = zizmor(bad)
    assert found.returncode != 0
    for audit in ("template-injection", "unpinned-uses", "excessive-permissions"):
        assert audit in found.stdout, found.stdout


def test_what_each_workflow_guarantees(repo: Path) -> None:
    run_cli(
        repo,
        "workflow",
        "--write",
        "--action",
        ACTION,
        "--action-version",
        "v1.2.3",
        "--workspace",
        "client-a",
        check=True,
    )
    for name, on in TRIGGERS.items():
        path = repo / f".github/workflows/outloop-{name}.yml"
        text = path.read_text()
        data = load_workflow(path)
        assert data["permissions"] == {}
        (job,) = data["jobs"].values()
        assert job["permissions"] == {"contents": "read"}
        assert data["concurrency"] == {
            "group": f"outloop-{name}-${{{{ github.ref }}}}",
            "cancel-in-progress": False,
        }
        # every `uses:` is pinned to a full commit, its version in a comment
        for line in re.findall(r"^\s*-?\s*uses: (.*)$", text, re.MULTILINE):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v[\d.]+", line), line
        steps = job["steps"]
        for step in steps:
            # no expression in a script: event text cannot become shell code
            assert "${{" not in step.get("run", "")
        (outloop,) = [s for s in steps if s.get("name") == "Run the loop"]
        assert outloop["uses"] == ACTION
        assert outloop["with"]["event"] == "true"
        assert outloop["with"]["loop"] == name
        # secrets only in that step's env, under outloop's names
        assert text.count("secrets.") == len(outloop.get("env", {}))
        for var, value in outloop.get("env", {}).items():
            assert re.fullmatch(r"OUTLOOP_SECRET_CLIENT_A_[A-Z0-9_]+", var)
            assert value == f"${{{{ secrets.{var} }}}}"
        triggers = data["on"]
        assert ("workflow_dispatch" in triggers) == on.get("manual", True)
        if "schedule" in on:
            crons = [entry["cron"] for entry in triggers["schedule"]]
            assert "@" not in "".join(crons)
            if "timezone" in on:
                assert {e["timezone"] for e in triggers["schedule"]} == {on["timezone"]}
        if "issues" in on:
            assert triggers["issues"] == {"types": ["labeled"]}
        if "ci_failed" in on:
            run = triggers["workflow_run"]
            assert run["types"] == ["completed"]
            assert run["branches"] == on["ci_failed"]["branches"]
            # without `workflows:` every workflow of the repository but outloop's own
            assert run["workflows"] == on["ci_failed"].get("workflows", ["CI", "lint.yml"])
            assert "github.event.workflow_run.conclusion == 'failure'" in job["if"]
            assert "head_repository.full_name == github.repository" in job["if"]


def test_check_fails_on_a_stale_workflow_and_write_fixes_it(repo: Path) -> None:
    run_cli(repo, "workflow", "--write", "--action", ACTION, check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "workflows")
    fresh = run_cli(repo, "workflow", "--check")
    assert fresh.returncode == 0, fresh.stderr
    loop = repo / ".outloop/issues.yml"
    loop.write_text(
        loop.read_text().replace("outloop-fix", "x").replace("- outloop\n", "- agent\n")
    )
    stale = run_cli(repo, "workflow", "--check")
    assert stale.returncode == 1
    assert ".github/workflows/outloop-issues.yml: stale" in stale.stderr
    # the pin is kept from the committed file: no --action needed again
    run_cli(repo, "workflow", "--write", check=True)
    assert (
        f"octo/outloop@{ACTION_SHA}" in (repo / ".github/workflows/outloop-issues.yml").read_text()
    )
    assert run_cli(repo, "workflow", "--check").returncode == 0
    # a loop that lost its `on:` leaves an orphan: stale, and --write removes it
    (repo / ".outloop/manual.yml").write_text(loop_yaml(["my-agent"], "pytest -q"))
    orphan = run_cli(repo, "workflow", "--check")
    assert orphan.returncode == 1 and "outloop-manual.yml: orphaned" in orphan.stderr
    run_cli(repo, "workflow", "--write", check=True)
    assert not (repo / ".github/workflows/outloop-manual.yml").exists()


def test_a_config_error_exits_2_with_the_spot(repo: Path) -> None:
    (repo / ".outloop/bad.yml").write_text(loop_file({"schedule": ["0 0 31 2 *"]}))
    done = run_cli(repo, "workflow", "--check", "--action", ACTION)
    assert done.returncode == 2
    assert re.search(r"\.outloop/bad\.yml:\d+:\d+: on\.schedule\[0\]: invalid cron", done.stderr)
    assert "never fires" in done.stderr


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("octo/outloop@v1", "not pinned to a full commit SHA"),
        ("octo/outloop@main", "not pinned to a full commit SHA"),
        ("octo", "is not owner/repo@<commit sha>"),
    ],
)
def test_the_action_must_be_pinned(repo: Path, action: str, message: str) -> None:
    done = run_cli(repo, "workflow", "--action", action)
    assert done.returncode == 2
    assert message in done.stderr


def test_without_a_pin_it_asks_for_one(repo: Path) -> None:
    done = run_cli(repo, "workflow")
    assert done.returncode == 2
    assert "--action OWNER/outloop@<40-hex commit>" in done.stderr


def test_ci_failed_without_workflows_to_watch_is_an_error(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/fix.yml": loop_file({"ci_failed": {"branches": ["main"]}})})
    done = run_cli(repo, "workflow", "--action", ACTION)
    assert done.returncode == 2
    assert "name the workflows to watch" in done.stderr


def test_action_yml_and_the_templates_pass_zizmor() -> None:
    paths = [ROOT / "action.yml", *sorted((ROOT / "templates/workflows").glob("*.yml"))]
    linted = zizmor(*paths)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    for path in paths:
        for line in re.findall(r"^\s*-?\s*uses: (\S+)", path.read_text(), re.MULTILINE):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", line), (path.name, line)


def test_the_pinned_actions_run_on_node_24() -> None:
    """The pins in code, action.yml and the templates are the same releases."""
    from outloop_cli.triggers.workflow import CHECKOUT, SETUP_PYTHON, UPLOAD_ARTIFACT

    texts = "\n".join(
        p.read_text() for p in [ROOT / "action.yml", *(ROOT / "templates/workflows").glob("*.yml")]
    )
    for name, sha, version in (CHECKOUT, SETUP_PYTHON, UPLOAD_ARTIFACT):
        assert re.fullmatch(r"[0-9a-f]{40}", sha)
        for line in re.findall(rf"uses: {re.escape(name)}@(\S+ # \S+)", texts):
            assert line == f"{sha} # {version}"
    assert (
        f"actions/setup-python@{SETUP_PYTHON[1]} # {SETUP_PYTHON[2]}"
        in (ROOT / "action.yml").read_text()
    )
