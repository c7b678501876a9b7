"""The composite Action, run step by step the way a GitHub runner runs it.

A small runner here reads ``action.yml``, evaluates the ``${{ inputs.* }}`` and
``${{ steps.*.outputs.* }}`` expressions in ``env:`` and ``if:``, gives each
``run:`` step the variables a runner sets (``GITHUB_OUTPUT``,
``GITHUB_STEP_SUMMARY``, ``GITHUB_ACTION_PATH``, ``RUNNER_TEMP``…), runs it with
``bash --noprofile --norc -eo pipefail`` like the runner's ``shell: bash``, reads
the output files back, and interprets workflow commands (``::add-mask::``,
``::stop-commands::``, ``::error``) from the log as the runner would.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
VENV_BIN = Path(sys.executable).parent
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepRun:
    name: str
    exit_code: int | None
    log: list[str]
    outputs: dict[str, str]
    summary: str


@dataclass
class RunnerResult:
    steps: list[StepRun] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    annotations: list[tuple[str, str, str]] = field(default_factory=list)
    # lines the runner treated as commands while commands were enabled
    commands: list[str] = field(default_factory=list)
    failed: bool = False
    # the action's outputs, as the workflow would see them
    outputs: dict[str, str] = field(default_factory=dict)

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    @property
    def log(self) -> list[str]:
        return [line for s in self.steps for line in s.log]


def parse_output_file(path: Path) -> dict[str, str]:
    """``name=value`` and ``name<<DELIM`` … ``DELIM`` as the runner reads them."""
    outputs: dict[str, str] = {}
    lines = path.read_text().split("\n") if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            i += 1
            while lines[i] != delimiter:
                value.append(lines[i])
                i += 1
            outputs[name] = "\n".join(value)
        elif "=" in line:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
        i += 1
    return outputs


class MiniRunner:
    def __init__(self, workspace: Path, tmp: Path, *, env: dict[str, str] | None = None) -> None:
        self.workspace = workspace
        self.tmp = tmp
        self.extra_env = dict(env or {})
        self.spec: dict[str, Any] = yaml.safe_load(ACTION.read_text())

    def _value(self, expr: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]) -> str:
        parts = expr.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            return inputs[parts[1]]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return steps.get(parts[1], {}).get(parts[3], "")
        raise AssertionError(f"expression the mini runner does not know: {expr}")

    def _interpolate(
        self, text: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]
    ) -> str:
        return _EXPR.sub(lambda m: self._value(m.group(1), inputs, steps), text)

    def _condition(self, cond: str, steps: dict[str, dict[str, str]], failed: bool) -> bool:
        code = cond.replace("${{", "").replace("}}", "")
        code = code.replace("always()", "True").replace("success()", str(not failed))
        code = code.replace("&&", " and ").replace("||", " or ")
        code = re.sub(
            r"steps\.([\w-]+)\.outputs\.([\w-]+)",
            lambda m: repr(steps.get(m.group(1), {}).get(m.group(2), "")),
            code,
        )
        return bool(eval(code, {"__builtins__": {}}, {"True": True, "False": False}))

    def run(
        self,
        inputs: dict[str, str],
        *,
        skip: tuple[str, ...] = ("Install outloop",),
        path: str | None = None,
    ) -> RunnerResult:
        declared = self.spec["inputs"]
        values = {name: str(spec.get("default", "")) for name, spec in declared.items()}
        values.update(inputs)
        temp = self.tmp / "runner-temp"
        temp.mkdir(exist_ok=True)
        result = RunnerResult()
        steps: dict[str, dict[str, str]] = {}
        stop_token: str | None = None
        base_env = {
            "PATH": path or f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": os.environ["HOME"],
            "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
            "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
            "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
            "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_REPOSITORY": "octo/widgets",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": "https://api.github.com",
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            **self.extra_env,
        }
        for index, step in enumerate(self.spec["runs"]["steps"]):
            name = step.get("name", f"step {index}")
            if "if" in step and not self._condition(str(step["if"]), steps, result.failed):
                continue
            if result.failed and "if" not in step:
                continue
            if "uses" in step or name in skip:
                result.steps.append(StepRun(name, None, [], {}, ""))
                continue
            files = {
                key: self.tmp / f"{key.lower()}-{index}"
                for key in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH")
            }
            for file in files.values():
                file.write_text("")
            env = dict(base_env)
            env.update({k: str(v) for k, v in files.items()})
            env.update(
                {
                    k: self._interpolate(str(v), values, steps)
                    for k, v in (step.get("env") or {}).items()
                }
            )
            script = self.tmp / f"step-{index}.sh"
            script.write_text(step["run"])
            assert step["shell"] == "bash"
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=self.workspace,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=300,
            )
            log = done.stdout.splitlines()
            for line in log:
                if stop_token is not None:
                    if line == f"::{stop_token}::":
                        stop_token = None
                    continue
                m = re.match(r"^::([\w-]+)(?: ([^:]*))?::(.*)$", line)
                if not m:
                    continue
                command, props, data = m.groups()
                result.commands.append(line)
                if command == "add-mask":
                    result.masks.append(data)
                elif command == "stop-commands":
                    stop_token = data
                elif command in ("error", "warning", "notice"):
                    result.annotations.append((command, props or "", data))
            outputs = parse_output_file(files["GITHUB_OUTPUT"])
            if step.get("id"):
                steps[step["id"]] = outputs
            result.steps.append(
                StepRun(
                    name, done.returncode, log, outputs, files["GITHUB_STEP_SUMMARY"].read_text()
                )
            )
            if done.returncode != 0:
                result.failed = True
        result.outputs = {
            name: self._interpolate(str(spec["value"]), values, steps)
            for name, spec in self.spec["outputs"].items()
        }
        return result


def loop_repo(make_repo: RepoFactory, target: int, **overrides: Any) -> Path:
    return make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), counter_goal(target), **overrides
            )
        }
    )


def test_action_yml_is_valid_against_schemastore() -> None:
    checker = shutil.which("check-jsonschema", path=str(VENV_BIN)) or shutil.which(
        "check-jsonschema"
    )
    assert checker, "check-jsonschema is a dev dependency"
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "check-action.sh")],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "CHECK_JSONSCHEMA": checker,
            "ZIZMOR": shutil.which("zizmor", path=str(VENV_BIN)) or "zizmor",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok -- validation done") == 2
    assert "No findings to report" in done.stdout


def test_the_schema_check_catches_a_broken_action(tmp_path: Path) -> None:
    checker = shutil.which("check-jsonschema", path=str(VENV_BIN)) or "check-jsonschema"
    broken = yaml.safe_load(ACTION.read_text())
    del broken["runs"]["steps"][0]["shell"]
    (tmp_path / "action.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-actions", str(tmp_path / "action.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1


def test_inputs_reach_the_shell_only_through_env() -> None:
    spec = yaml.safe_load(ACTION.read_text())
    assert set(spec["inputs"]) == {"loop", "args", "policy", "event", "python-version", "version"}
    assert set(spec["outputs"]) == {"result", "iterations", "branch", "run-id", "junit", "audit"}
    assert spec["runs"]["using"] == "composite"
    for step in spec["runs"]["steps"]:
        # an expression pasted into a script is a shell injection
        assert "${{" not in step.get("run", ""), step.get("name")
    assert spec["runs"]["steps"][0]["name"] == "Mask outloop secrets"


def test_a_met_goal_sets_outputs_summary_and_a_notice(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = loop_repo(make_repo, 2)
    secret = "sk-abc%def\nsecond-line"
    runner = MiniRunner(repo, tmp_path, env={"OUTLOOP_SECRET_ACME_OPENAI": secret})
    result = runner.run({"loop": "fix"})
    assert not result.failed, "\n".join(result.log)
    # masks come first, before any other output, one per line, % escaped
    first = result.steps[0].log
    assert first[:2] == ["::add-mask::sk-abc%25def", "::add-mask::second-line"]
    assert base64.b64encode(f"x-access-token:{secret}".encode()).decode() in result.masks
    # outloop's own masker adds the encodings a shell step cannot compute, before the fence
    fence = next(i for i, c in enumerate(result.commands) if c.startswith("::stop-commands::"))
    before = result.commands[:fence]
    assert all(c.startswith("::add-mask::") for c in before)
    assert f"::add-mask::{secret.encode().hex()}" in before
    outputs = result.outputs
    assert outputs["result"] == "goal_met"
    assert outputs["iterations"] == "2"
    assert re.fullmatch(r"outloop/fix/\d{8}-\d{6}-[0-9a-f]{6}", outputs["branch"])
    assert outputs["branch"].endswith(outputs["run-id"])
    assert git(repo, "rev-parse", "--verify", outputs["branch"]).strip()
    junit = Path(outputs["junit"])
    assert junit.is_file() and junit.read_text().lstrip().startswith("<?xml")
    audit = Path(outputs["audit"])
    assert audit.is_file() and '"run_stopped"' in audit.read_text()
    report = result.step("Report")
    summary = report.summary
    assert summary.startswith("## ✅ fix: goal met after 2 iterations")
    assert len(summary.encode()) < 1024 * 1024
    assert [a[0] for a in result.annotations] == ["notice"]
    assert "title=outloop fix%3A goal_met" in result.annotations[0][1]


def test_outloop_output_is_fenced_from_workflow_commands(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = loop_repo(make_repo, 2)
    result = MiniRunner(repo, tmp_path).run({"loop": "fix"})
    log = result.step("Run outloop").log
    start = [i for i, line in enumerate(log) if line.startswith("::stop-commands::")]
    assert len(start) == 1
    token = log[start[0]].split("::")[2]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    end = log.index(f"::{token}::")
    # everything outloop printed is inside the fence
    assert start[0] == 0 and end == len(log) - 1
    assert any("[fix " in line for line in log[start[0] + 1 : end])
    again = tmp_path / "again"
    again.mkdir()
    second = MiniRunner(repo, again).run({"loop": "fix"})
    assert second.step("Run outloop").log[0] != log[0]


def test_an_unmet_goal_fails_the_step_with_an_error_annotation(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = loop_repo(make_repo, 9, limits={"max_iterations": 2, "stall": 5})
    result = MiniRunner(repo, tmp_path).run({"loop": "fix"})
    report = result.step("Report")
    assert report.exit_code == 1
    outputs = result.outputs
    assert outputs["result"] == "max_iterations"
    assert outputs["iterations"] == "2"
    (annotation,) = result.annotations
    assert annotation[0] == "error"
    assert annotation[1] == "title=outloop fix%3A max_iterations"
    assert "not met within 2 iteration" in annotation[2]
    assert "## ❌ fix" in report.summary


def test_hostile_inputs_are_data_not_shell(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = loop_repo(make_repo, 1)
    marker = tmp_path / "pwned"
    result = MiniRunner(repo, tmp_path).run(
        {"loop": f"$(touch {marker})", "args": f"'--max-iterations' '3' \"; touch {marker}\""}
    )
    assert not marker.exists()
    outputs = result.outputs
    assert outputs["result"] == "error"
    report = result.step("Report")
    assert report.exit_code == 2
    assert "outloop did not run" in report.summary
    assert result.annotations[0][0] == "error"
    assert "exited 2 (bad config or usage)" in result.annotations[0][2]


def test_args_are_split_like_a_shell_would(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = loop_repo(make_repo, 9, limits={"max_iterations": 5, "stall": 9})
    result = MiniRunner(repo, tmp_path).run({"loop": "fix", "args": "--max-iterations '1'"})
    assert result.outputs["iterations"] == "1"


@pytest.mark.slow
def test_install_step_installs_the_actions_own_copy(make_repo: RepoFactory, tmp_path: Path) -> None:
    """The real install step: pip installs outloop from GITHUB_ACTION_PATH into a fresh venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    repo = loop_repo(make_repo, 1)
    path = f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    result = MiniRunner(repo, tmp_path).run({"loop": "fix"}, skip=(), path=path)
    install = result.step("Install outloop")
    assert install.exit_code == 0, "\n".join(install.log)
    from outloop_cli import __version__

    # the next step runs the installed outloop (for its masks) and says which it is
    assert f"outloop {__version__}" in result.step("Mask every encoding of the secrets").log
    assert (venv / "bin" / "outloop").exists()
    assert result.outputs["result"] == "goal_met"


def test_args_that_do_not_split_fail_the_step_before_outloop_runs(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = loop_repo(make_repo, 1)
    result = MiniRunner(repo, tmp_path).run({"loop": "fix", "args": "--max-iterations '3"})
    run = result.step("Run outloop")
    assert run.exit_code == 2
    assert "the `args` input does not split into words: No closing quotation" in run.log
    assert result.annotations == [
        (
            "error",
            "title=outloop",
            "the `args` input does not split into words (an unclosed quote?)",
        )
    ]
    assert not any(line.startswith("::stop-commands::") for line in run.log)
    assert not (repo / ".git" / "outloop" / "runs").exists()
    assert result.outputs["result"] == ""
