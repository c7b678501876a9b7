"""Plain parameters (str, Path, lists of them, flags) coerce as typer's pydantic adapters do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import typer.main
from typer import _coercion

from outloop_cli.cli import plain_params
from outloop_cli.cli.app import app


def _params(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    for param in command.get_params(ctx):
        yield param, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from _params(sub, typer.Context(sub, parent=ctx, info_name=name))


def every_param() -> list[tuple[Any, Any]]:
    root = typer.main.get_command(app)
    return [
        (param, ctx)
        for param, ctx in _params(root, typer.Context(root, info_name="outloop"))
        if hasattr(param, "type_descriptor")
    ]


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "value", runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:
        return type(exc).__name__, str(getattr(exc, "message", exc))


def samples(tmp_path: Path) -> list[Any]:
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    return [
        "x",
        "",
        "-",
        " spaced ",
        "ünïcode",
        "a//b/",
        str(existing),
        str(tmp_path),
        str(tmp_path / "missing" / "x"),
        None,
        True,
        False,
        ("a", str(existing)),
        (),
    ]


def test_every_plain_parameter_of_the_app_coerces_as_typer_does(tmp_path: Path) -> None:
    checked = 0
    for param, ctx in every_param():
        descriptor = param.type_descriptor
        if not plain_params.is_plain(descriptor):
            continue
        ours = plain_params.runtime_param(descriptor)
        typers = _coercion.build_runtime_param(descriptor)
        assert isinstance(ours, plain_params.PlainRuntimeParam)
        for value in samples(tmp_path):
            multi = param.multiple or param.nargs == -1
            if isinstance(value, tuple) != multi and value is not None:
                continue  # click never hands a list to a single value, nor one value to a list
            if isinstance(value, bool) and descriptor.annotation is not bool:
                continue
            assert _outcome(ours, value, param, ctx) == _outcome(typers, value, param, ctx), (
                param.name,
                value,
            )
            checked += 1
    assert checked > 100


def test_numbers_choices_and_parsers_keep_typers_own_coercion() -> None:
    kept = [
        (param.name, descriptor.annotation)
        for param, _ in every_param()
        for descriptor in [param.type_descriptor]
        if not plain_params.is_plain(descriptor)
    ]
    assert kept, "the app has int and float options"
    assert all(annotation in (int, float) for _, annotation in kept), kept


def test_a_flag_given_a_word_is_judged_by_typer() -> None:
    flag = next(param for param, _ in every_param() if param.type_descriptor.annotation is bool)
    ctx = typer.Context(typer.main.get_command(app), info_name="outloop")
    ours = plain_params.runtime_param(flag.type_descriptor)
    typers = _coercion.build_runtime_param(flag.type_descriptor)
    for word in ("yes", "0", "nonsense"):
        assert _outcome(ours, word, flag, ctx) == _outcome(typers, word, flag, ctx)


def test_the_app_installs_the_plain_coercion() -> None:
    typer.main.get_command(app)
    assert typer.core.build_runtime_param is plain_params.runtime_param


@pytest.mark.parametrize("argv", [["status", "--loop", "x"], ["validate", "nothing.yml"]])
def test_running_a_verb_with_plain_options_imports_no_pydantic(argv: list[str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from outloop_cli.main import main\n"
        f"main({argv!r})\n"
        "sys.stdout.write(repr(sorted(m for m in sys.modules if m.startswith('pydantic'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.endswith("[]"), done.stdout + done.stderr
