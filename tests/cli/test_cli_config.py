"""`outloop validate`, `init` and `list` as a user runs them: real CLI, real git repos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from outloop_cli.agents.registry import PRESETS
from outloop_cli.config.loop_schema import json_schema
from tests.conftest import GIT_IDENTITY, RepoFactory, git
from tests.support.config_corpus import INVALID_FIXTURES, VALID, InvalidFixture
from tests.support.e2e import run_cli

Done = subprocess.CompletedProcess[str]

MINIMAL = "agent:\n  preset: command\n  command: [my-agent]\ngoal:\n  run: 'true'\n"
BROKEN = "agent:\n  preset: claud\n  prompt: x\ngoal:\n  run: 'true'\nlimits: {stall: 0}\n"


def problem_blocks(stderr: str, shown: str) -> list[str]:
    """The problems in validate's output: each a `file:line:col: message` line and its hint."""
    blocks: list[str] = []
    for line in stderr.splitlines():
        if line.startswith(f"{shown}:"):
            blocks.append(line)
        elif line.startswith("  ") and blocks:
            blocks[-1] += "\n" + line
    return blocks


def assert_clean_usage_error(done: Done) -> None:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert "hint:" in done.stderr


# --- validate: the invalid corpus, one file at a time ------------------------------------


@pytest.fixture(scope="module")
def corpus_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repository holding every invalid fixture in .outloop/, and isolated user state.

    Module-scoped so the CLI runs over the corpus happen once; the user state is
    isolated here by hand because the per-test autouse fixture is not set up yet.
    """
    home = tmp_path_factory.mktemp("cli-home")
    repo = tmp_path_factory.mktemp("corpus-repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
            patch.setenv(var, str(home / var.lower()))
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for key, value in GIT_IDENTITY.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("OUTLOOP_")]:
            patch.delenv(key)
        git(repo, "init", "-q", "-b", "main")
        (repo / ".outloop").mkdir()
        for fixture in INVALID_FIXTURES:
            shutil.copyfile(fixture.path, repo / ".outloop" / fixture.path.name)
        yield repo


@pytest.fixture(scope="module")
def validated_together(corpus_repo: Path) -> Done:
    """`outloop validate` of the whole corpus in one run."""
    return run_cli(corpus_repo, "validate")


@pytest.fixture(scope="module")
def validated_one_by_one(corpus_repo: Path) -> dict[str, Done]:
    """`outloop validate .outloop/<fixture>` for every invalid fixture, four at a time."""

    def validate(fixture: InvalidFixture) -> Done:
        return run_cli(corpus_repo, "validate", f".outloop/{fixture.path.name}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(validate, INVALID_FIXTURES))
    return {f.path.name: done for f, done in zip(INVALID_FIXTURES, results, strict=True)}


def assert_reports(fixture: InvalidFixture, stderr: str) -> None:
    """Every expected problem as `file:line:col: message`, each with a hint line."""
    shown = f".outloop/{fixture.path.name}"
    blocks = problem_blocks(stderr, shown)
    assert blocks, stderr
    for expected in fixture.expectations:
        head = f"{shown}{expected.where}: "
        assert any(b.startswith(head) and expected.fragment in b for b in blocks), (
            f"missing {head}{expected.fragment}\n{stderr}"
        )
    for block in blocks:
        assert "\n  hint: " in block, block


def test_validate_reports_every_problem_of_every_file(validated_together: Done) -> None:
    assert_clean_usage_error(validated_together)
    assert validated_together.stdout == ""
    for fixture in INVALID_FIXTURES:
        assert_reports(fixture, validated_together.stderr)
    count = len(INVALID_FIXTURES)
    assert f"in {count} of {count} file(s)" in validated_together.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fixture", INVALID_FIXTURES, ids=[f.path.name for f in INVALID_FIXTURES])
def test_validate_one_file_exits_2_with_location_and_hint(
    fixture: InvalidFixture, validated_one_by_one: dict[str, Done]
) -> None:
    done = validated_one_by_one[fixture.path.name]
    assert_clean_usage_error(done)
    assert done.stdout == ""
    assert_reports(fixture, done.stderr)
    assert done.stderr.rstrip().endswith("problem(s) in 1 of 1 file(s)")


def test_validate_reports_all_problems_of_a_file_not_just_the_first(corpus_repo: Path) -> None:
    done = run_cli(corpus_repo, "validate", ".outloop/many-problems.yml")
    assert_clean_usage_error(done)
    blocks = problem_blocks(done.stderr, ".outloop/many-problems.yml")
    assert len(blocks) == 10
    heads = [b.split(": ", 1)[0] for b in blocks]
    assert heads[0] == ".outloop/many-problems.yml:13:1"
    assert heads[-1] == ".outloop/many-problems.yml:27:10"
    assert "10 problem(s) in 1 of 1 file(s)" in done.stderr


# --- validate: whole repositories -------------------------------------------------------


def test_validate_every_valid_fixture_in_one_repo(make_repo: RepoFactory, tmp_path: Path) -> None:
    from tests.fakes.tls import make_pki

    # the files the fixtures name are in the commit, as a run would need them
    ca = make_pki(tmp_path / "pki").ca_pem.decode()
    named = {"docs/PROMPT.md": "Fix it.\n", "docs/SPEC.md": "The spec.\n", "certs/ca.pem": ca}
    repo = make_repo({**{f".outloop/{p.name}": p.read_text() for p in VALID}, **named})
    done = run_cli(repo, "validate")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"{len(VALID)} loop file(s) OK"


def test_validate_checks_every_loop_and_every_file_named(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/good.yml": MINIMAL, ".outloop/bad.yml": BROKEN, ".outloop/worse.yml": "[]\n"}
    )
    everything = run_cli(repo, "validate")
    assert_clean_usage_error(everything)
    assert ".outloop/bad.yml:2:11: agent.preset:" in everything.stderr
    assert ".outloop/bad.yml:6:17: limits.stall:" in everything.stderr
    assert ".outloop/worse.yml:1:1: a loop file must be a mapping" in everything.stderr
    assert "3 problem(s) in 2 of 3 file(s)" in everything.stderr
    named = run_cli(repo, "validate", ".outloop/good.yml", ".outloop/worse.yml")
    assert_clean_usage_error(named)
    assert ".outloop/bad.yml" not in named.stderr
    assert "1 problem(s) in 1 of 2 file(s)" in named.stderr
    good = run_cli(repo, "validate", ".outloop/good.yml")
    assert (good.returncode, good.stderr.strip()) == (0, "1 loop file(s) OK")


def test_validate_from_a_subdirectory(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/bad.yml": BROKEN, "src/app.py": ""})
    done = run_cli(repo / "src", "validate")
    assert_clean_usage_error(done)
    assert ".outloop/bad.yml:2:11:" in done.stderr


def test_validate_with_no_loops(make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    done = run_cli(repo, "validate")
    assert_clean_usage_error(done)
    assert "error: no loop files in " in done.stderr
    assert "outloop init" in done.stderr


def test_validate_outside_a_git_repository(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "validate")
    assert_clean_usage_error(done)
    assert f"error: {tmp_path} is not inside a git repository" in done.stderr
    assert "git init" in done.stderr


def test_validate_a_named_file_outside_a_git_repository(tmp_path: Path) -> None:
    """An editor or a pre-commit hook may check one file wherever it is."""
    (tmp_path / "good.yml").write_text(MINIMAL)
    (tmp_path / "bad.yml").write_text(BROKEN)
    assert run_cli(tmp_path, "validate", "good.yml").returncode == 0
    done = run_cli(tmp_path, "validate", "bad.yml")
    assert_clean_usage_error(done)
    assert f"{tmp_path / 'bad.yml'}:2:11: agent.preset:" in done.stderr


def test_validate_a_missing_file(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/good.yml": MINIMAL})
    done = run_cli(repo, "validate", ".outloop/nope.yml")
    assert_clean_usage_error(done)
    assert ".outloop/nope.yml: no such file" in done.stderr


def test_validate_a_loop_by_name_like_run(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/good.yml": MINIMAL, ".outloop/bad.yaml": BROKEN})
    assert run_cli(repo / ".outloop", "validate", "good").returncode == 0
    done = run_cli(repo, "validate", "good", "bad")
    assert_clean_usage_error(done)
    assert ".outloop/bad.yaml:2:11: agent.preset:" in done.stderr
    assert "2 problem(s) in 1 of 2 file(s)" in done.stderr
    # a path is a path: no guessing for anything but a bare name
    assert "sub/good: no such file" in run_cli(repo, "validate", "sub/good").stderr


def test_validate_a_directory(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/good.yml": MINIMAL})
    done = run_cli(repo, "validate", ".outloop")
    assert_clean_usage_error(done)
    assert ".outloop: is a directory, not a loop file" in done.stderr


def test_validate_two_files_with_one_loop_name(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/fix.yml": MINIMAL, ".outloop/fix.yaml": MINIMAL})
    done = run_cli(repo, "validate")
    assert_clean_usage_error(done)
    assert ".outloop/fix.yml: loop name 'fix' is also used by .outloop/fix.yaml" in done.stderr


# --- init ---------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_init_writes_a_starter_that_validates(preset: str, make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    done = run_cli(repo, "init", "--preset", preset)
    assert done.returncode == 0, done.stderr
    target = repo / ".outloop" / f"{preset}.yml"
    assert done.stdout.strip() == f"wrote {target}"
    text = target.read_text()
    first = text.splitlines()[0]
    assert first == "# yaml-language-server: $schema=schema.json"
    # relative to the loop file, as yaml-language-server resolves it
    schema_file = target.parent / first.split("=", 1)[1]
    assert json.loads(schema_file.read_text()) == json_schema()
    checked = run_cli(repo, "validate", f".outloop/{preset}.yml")
    assert (checked.returncode, checked.stderr.strip()) == (0, "1 loop file(s) OK")


def test_the_schema_init_names_resolves_in_a_clone_elsewhere(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    """The loop file is committed: its $schema must work on a teammate's or CI's clone."""
    import jsonschema
    import yaml

    repo = make_repo({"README.md": "hi\n"}, name="alice/work/project")
    assert run_cli(repo, "init", "--preset", "claude").returncode == 0
    git(repo, "add", ".outloop")
    git(repo, "commit", "-q", "-m", "add a loop")
    clone = tmp_path / "ci" / "checkout" / "elsewhere"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    # the original is gone: nothing may point back at it (or at its machine's cache)
    shutil.rmtree(repo)

    loop_file = clone / ".outloop" / "claude.yml"
    text = loop_file.read_text()
    reference = text.splitlines()[0].removeprefix("# yaml-language-server: $schema=")
    assert not Path(reference).is_absolute() and str(tmp_path) not in text
    schema = json.loads((loop_file.parent / reference).read_text())
    assert schema == json_schema()
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(text))
    checked = run_cli(clone, "schema", "--check")
    assert checked.returncode == 0, checked.stderr
    # and the copy beside the loops is not taken for a loop
    validated = run_cli(clone, "validate")
    assert (validated.returncode, validated.stderr.strip()) == (0, "1 loop file(s) OK")


def test_schema_check_fails_on_a_stale_copy_and_write_refreshes_it(make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    missing = run_cli(repo, "schema", "--check")
    assert missing.returncode == 1 and "missing" in missing.stderr
    assert "outloop schema --write" in missing.stderr
    copy = repo / ".outloop" / "schema.json"
    copy.parent.mkdir()
    copy.write_text('{"title": "an older outloop"}\n')
    stale = run_cli(repo, "schema", "--check")
    assert stale.returncode == 1 and "stale" in stale.stderr

    written = run_cli(repo / ".outloop", "schema", "--write")

    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == str(copy)
    assert json.loads(copy.read_text()) == json_schema()
    assert run_cli(repo, "schema", "--check").returncode == 0


def test_init_names_the_loop_and_writes_at_the_repository_root(make_repo: RepoFactory) -> None:
    repo = make_repo({"src/app.py": ""})
    done = run_cli(repo / "src", "init", "--preset", "claude", "--name", "fix-tests")
    assert done.returncode == 0, done.stderr
    assert (repo / ".outloop" / "fix-tests.yml").is_file()
    assert not (repo / "src" / ".outloop").exists()


def test_init_refuses_to_overwrite_without_force(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/command.yml": MINIMAL})
    target = repo / ".outloop" / "command.yml"
    before = target.stat()
    done = run_cli(repo, "init")
    assert_clean_usage_error(done)
    assert f"error: {target} already exists" in done.stderr
    assert "--force" in done.stderr
    assert target.read_text() == MINIMAL
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert git(repo, "status", "--porcelain") == ""
    forced = run_cli(repo, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() != MINIMAL
    assert run_cli(repo, "validate").returncode == 0


def test_init_does_not_add_a_twin_of_a_yaml_loop(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/command.yaml": MINIMAL})
    done = run_cli(repo, "init")
    assert_clean_usage_error(done)
    assert "command.yaml already exists" in done.stderr
    assert not (repo / ".outloop" / "command.yml").exists()


def test_init_with_an_unknown_preset(make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    done = run_cli(repo, "init", "--preset", "copilot")
    assert_clean_usage_error(done)
    assert "error: unknown preset `copilot`" in done.stderr
    assert "hint: choose one of: " + ", ".join(PRESETS) in done.stderr
    assert not (repo / ".outloop").exists()


@pytest.mark.parametrize("name", ["../escape", "a b", ".hidden", "x.lock", "sub/loop"])
def test_init_with_a_bad_loop_name(name: str, make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    done = run_cli(repo, "init", "--name", name)
    assert_clean_usage_error(done)
    assert "loop name" in done.stderr
    assert not (repo / ".outloop").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored") == ""


def test_init_outside_a_git_repository(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "init")
    assert_clean_usage_error(done)
    assert "is not inside a git repository" in done.stderr
    assert list(tmp_path.iterdir()) == []


# --- list ---------------------------------------------------------------------------------


LISTED = {
    ".outloop/fix.yml": "description: Fix the tests\n" + MINIMAL,
    ".outloop/ci.yml": (
        "agent:\n  preset: claude\n  prompt: Make CI green.\ngoal:\n  ci: {provider: gitlab}\n"
    ),
    ".outloop/broken.yml": BROKEN,
    ".outloop/notes.txt": "not a loop\n",
    ".outloop/.hidden.yml": MINIMAL,
}


def test_list_shows_every_loop_and_flags_broken_ones(make_repo: RepoFactory) -> None:
    repo = make_repo(LISTED)
    done = run_cli(repo, "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["broken", "ci", "fix"]
    assert "2 problem(s)" in lines[0] and "outloop validate" in lines[0]
    assert lines[1] == "ci: claude → ci (gitlab)"
    assert lines[2] == "fix: command: my-agent → true — Fix the tests"


def test_list_json(make_repo: RepoFactory) -> None:
    repo = make_repo(LISTED)
    done = run_cli(repo, "list", "--json")
    assert done.returncode == 0, done.stderr
    loops = [json.loads(line) for line in done.stdout.splitlines()]
    assert loops == [
        {
            "name": "broken",
            "path": ".outloop/broken.yml",
            "agent": "?",
            "goal": "?",
            "description": None,
            "problems": 2,
        },
        {
            "name": "ci",
            "path": ".outloop/ci.yml",
            "agent": "claude",
            "goal": "ci (gitlab)",
            "description": None,
            "problems": 0,
        },
        {
            "name": "fix",
            "path": ".outloop/fix.yml",
            "agent": "command: my-agent",
            "goal": "true",
            "description": "Fix the tests",
            "problems": 0,
        },
    ]


def test_list_with_no_loops(make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "hi\n"})
    for args in (["list"], ["list", "--json"]):
        done = run_cli(repo, *args)
        assert (done.returncode, done.stdout) == (0, "")
        assert "no loops yet" in done.stderr


def test_list_outside_a_git_repository(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "list")
    assert_clean_usage_error(done)
    assert "is not inside a git repository" in done.stderr


def test_init_without_a_writable_cache_still_writes_a_valid_starter(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    repo = make_repo({"README.md": "hi\n"})
    done = run_cli(repo, "init", "--preset", "claude")
    assert done.returncode == 0, done.stderr
    # the schema it names is the repository's own copy: no cache involved
    first = (repo / ".outloop" / "claude.yml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=schema.json"
    assert (repo / ".outloop" / "schema.json").is_file()
    assert run_cli(repo, "validate").returncode == 0


def test_schema_repos_prints_the_repo_groups_schema_and_a_file_holding_it(
    tmp_path: Path,
) -> None:
    from outloop_cli.config.repo_groups import json_schema as repos_schema

    printed = run_cli(tmp_path, "schema", "--repos")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == repos_schema()
    located = run_cli(tmp_path, "schema", "--repos", "--path")
    assert located.returncode == 0, located.stderr
    schema_file = Path(located.stdout.strip())
    assert json.loads(schema_file.read_text()) == repos_schema()
    assert schema_file != Path(run_cli(tmp_path, "schema", "--path").stdout.strip())
    # repos.yml lives outside every repository: there is no committed copy to write
    refused = run_cli(tmp_path, "schema", "--repos", "--write")
    assert refused.returncode == 2 and "--repos" in refused.stderr
    assert "Traceback" not in refused.stderr
