"""The plain reader of ``status`` and ``validate`` command lines against typer's.

Each command line runs twice, in-process: through ``main`` (which uses the
plain reader where it can) and through typer alone. What the verb hands its
``commands/`` function, what it prints and its exit code must be the same.
The command lines the plain reader must take are listed apart from those it
must leave to typer, so a reader that silently started deferring everything
(or nothing) fails too.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import pytest

from outloop_cli import main as entry
from outloop_cli.cli import plain_argv
from outloop_cli.cli.plain_options import PlainArgument, PlainOption, for_typer, markers_of
from outloop_cli.cli.verbs import VERBS
from outloop_cli.commands import status as status_commands
from outloop_cli.commands import validate as validate_commands
from tests.conftest import RepoFactory

PLAIN_VERBS = sorted(verb for verb, row in VERBS.items() if row.plain)

TAKEN = {
    "validate": [
        [],
        ["a.yml"],
        ["a.yml", "b.yml"],
        ["--from", "v1"],
        ["--from=v1"],
        ["--from="],
        ["--from", ""],
        ["a.yml", "--from", "x", "b.yml"],
        ["--from", "x", "a.yml"],
        ["dir/é.yml", "--from=HEAD~1"],
        ["--from=--x"],
    ],
    "status": [
        [],
        ["--json"],
        ["--all"],
        ["--all", "--json"],
        ["--loop", "fix"],
        ["--loop=fix", "--json"],
        ["--json", "--loop", "x", "--all"],
        ["--loop", ""],
    ],
}

LEFT_TO_TYPER = {
    "validate": [
        ["--help"],
        ["--from"],
        ["--from", "--help"],
        ["--from", "a", "--from", "b"],
        ["--", "-x.yml"],
        ["-"],
        ["--bogus"],
        ["-h"],
        ["--from", "-x"],
        ["a.yml", "--fro", "x"],
    ],
    "status": [
        ["extra"],
        ["--json=1"],
        ["--json", "--json"],
        ["--loop"],
        ["--help"],
        ["--all", "--", "x"],
        ["--loop", "a", "--loop", "b"],
        ["-j"],
    ],
}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The calls the verbs make into ``commands/``, answered with fixed values."""
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(name: str, answer: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, args, kwargs))
            return answer

        return record

    monkeypatch.setattr(validate_commands, "validate", recorder("validate", ([Path("x")], [])))
    monkeypatch.setattr(status_commands, "list_runs", recorder("list_runs", []))
    monkeypatch.setattr(status_commands, "list_all_runs", recorder("list_all_runs", []))
    return calls


def _both(
    argv: list[str],
    recorded: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    capsys.readouterr()
    results = []
    for dispatch in (entry.main, entry._typer_dispatch):
        recorded.clear()
        try:
            code: Any = dispatch(list(argv))
        except SystemExit as exc:  # typer's --help exits
            code = exc.code
        out, err = capsys.readouterr()
        results.append((code, out, err, list(recorded)))
    return results[0], results[1]


@pytest.mark.parametrize(
    ("verb", "argv", "taken"),
    [(verb, argv, True) for verb in PLAIN_VERBS for argv in TAKEN[verb]]
    + [(verb, argv, False) for verb in PLAIN_VERBS for argv in LEFT_TO_TYPER[verb]],
)
def test_both_readers_give_one_result_and_the_unsure_lines_go_to_typer(
    verb: str,
    argv: list[str],
    taken: bool,
    recorded: list[Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (plain_argv.plain_call(verb, argv) is not None) == taken
    plain, typer_only = _both([verb, *argv], recorded, capsys)
    assert plain == typer_only
    if taken:
        assert plain[3], "the verb called into commands/"


def test_the_tables_cover_every_plain_verb() -> None:
    assert PLAIN_VERBS == sorted(TAKEN) == sorted(LEFT_TO_TYPER)


def test_typer_gets_typer_options_and_help_from_the_markers() -> None:
    import typer

    from outloop_cli.cli.registry import declared_command

    for verb in PLAIN_VERBS:
        plain_argv.plain_call(verb, [])  # imports the module
        func = declared_command(verb)
        typed = for_typer(func)
        assert typed is not func
        for name, hint in typing.get_type_hints(typed, include_extras=True).items():
            if name == "return":
                continue
            _, metadata = markers_of(hint)
            assert any(isinstance(m, typer.models.ParameterInfo) for m in metadata), name
            assert not any(isinstance(m, (PlainOption, PlainArgument)) for m in metadata)
        # the module's own function keeps its markers for the plain reader
        assert plain_argv.params_of(func)


def test_a_parameter_the_plain_reader_cannot_take_is_refused_by_name() -> None:
    def counted(
        count: Annotated[int, PlainOption("--count", help="How many.")] = 1,
    ) -> None:
        """A number needs typer's coercion and its error messages."""

    with pytest.raises(TypeError, match="count"):
        plain_argv.params_of(counted)


def test_a_function_without_markers_is_handed_to_typer_as_it_is() -> None:
    def plain(name: str = "x") -> None:
        """Nothing to translate."""

    assert for_typer(plain) is plain


# what each plain verb's start must not pay for: typer; shutil (which brings bz2, lzma and
# zlib), socket and unicodedata; up to 3.11 the ast, dis and tokenize a loaded inspect
# brings (cli/deferred_modules.py); for status, the worktree and config machinery it never uses
_NEITHER_VERB_IMPORTS = ["typer", "shutil", "socket", "unicodedata"]
if sys.version_info < (3, 12):
    # from 3.12 on dataclasses itself loads inspect
    _NEITHER_VERB_IMPORTS += ["ast", "dis", "tokenize"]
NOT_ON_THE_START = {
    # a loop without a schedule: no cron parser, no time zones
    "validate": [*_NEITHER_VERB_IMPORTS, "zoneinfo", "outloop_cli.triggers.cron"],
    "status": [*_NEITHER_VERB_IMPORTS, "outloop_cli.git.worktree", "outloop_cli.config.loader"],
}


@pytest.mark.parametrize(
    ("verb", "argv"), [("validate", []), ("status", ["--json"]), ("status", ["--all"])]
)
def test_the_plain_verbs_run_without_importing_typer(
    verb: str, argv: list[str], make_repo: RepoFactory
) -> None:
    repo = make_repo(
        {
            ".outloop/fix.yml": (
                "agent:\n  preset: command\n  command: [/bin/true]\n  prompt: x\n"
                "goal:\n  run: 'true'\n"
            )
        }
    )
    avoided = NOT_ON_THE_START[verb]
    if "--all" in argv:
        # the machine-wide index module writes through tempfile, which imports shutil
        avoided = [name for name in avoided if name != "shutil"]
    code = (
        "import sys\n"
        "from outloop_cli.main import main\n"
        f"code = main({[verb, *argv]!r})\n"
        "sys.stdout.flush()\n"
        f"print([m for m in {avoided!r} if m in sys.modules], code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "[] 0", done.stderr
    # and a line left to typer does import it: the check above can fail
    done = subprocess.run(
        [sys.executable, "-c", code.replace(repr([verb, *argv]), repr([verb, "--help"]))],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage: outloop" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("['typer'"), done.stdout


def test_parameters_read_from_the_code_match_inspect_signature() -> None:
    import functools
    import inspect

    def mixed(a: int, b: str = "x", *, c: bool = False, d: int) -> None:
        """Positional and keyword-only, with and without defaults."""

    def nothing() -> None:
        """No parameters."""

    from outloop_cli.cli.registry import declared_command

    functions = [mixed, nothing]
    for verb in PLAIN_VERBS:
        plain_argv.plain_call(verb, [])  # imports the module
        functions.append(declared_command(verb))
    for func in functions:
        expected = [
            (name, plain_argv._NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(func).parameters.items()
        ]
        assert plain_argv._parameters(func) == expected, func.__qualname__

    def star(*args: str) -> None:
        """Takes anything."""

    def stars(**kwargs: str) -> None:
        """Takes anything by name."""

    @functools.wraps(mixed)
    def wrapped(*args: Any, **kwargs: Any) -> None:
        """A wrapper's signature is its wrapped function's, which the code does not show."""

    class Verbs:
        def bound(self, a: int = 1) -> None:
            """A method: its code lists self, which a caller never passes."""

    def stated(a: int = 1) -> None:
        """A stated signature overrides the code's."""

    stated.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    partial = functools.partial(mixed, 1)
    for refused in (star, stars, wrapped, len, Verbs().bound, stated, partial):
        with pytest.raises(TypeError, match=r"a plain verb is a function of its own|args"):
            plain_argv._parameters(refused)


def test_markers_are_found_inside_the_optional_python_3_10_wraps_them_in() -> None:
    marker = PlainArgument(help="Loop files.")
    annotated = Annotated[Optional[list[Path]], marker]  # noqa: UP045 (the 3.10 shape)
    # Python 3.10's get_type_hints gives a parameter whose default is None this hint
    assert markers_of(Optional[annotated]) == (Optional[list[Path]], [marker])  # noqa: UP045
    assert markers_of(annotated) == (Optional[list[Path]], [marker])  # noqa: UP045
    # a real union around an Annotated is no marker's
    assert markers_of(Union[annotated, int]) == (Union[annotated, int], [])  # noqa: UP007
