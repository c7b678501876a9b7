"""A deferred module is the real module once used, and loads once however many threads ask.

Each case runs in a fresh interpreter: the test process has long imported
``inspect``, and a deferral only takes a module no one has imported yet.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _python(code: str, *, path: Path | None = None) -> list[str]:
    prelude = f"import sys\nsys.path.insert(0, {str(path)!r})\n" if path else ""
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_inspect_deferred_loads_at_its_first_attribute_into_the_same_module() -> None:
    lines = _python(
        """
        import sys, types
        from outloop_cli.cli.deferred_modules import defer, is_loaded
        assert "inspect" not in sys.modules and "ast" not in sys.modules
        print(defer("inspect"))
        import inspect
        held = inspect
        # importing it ran none of its code, nor did a dataclass with a docstring
        import dataclasses

        @dataclasses.dataclass(frozen=True)
        class Point:
            '''Has its own docstring, so dataclasses asks inspect nothing.'''
            x: int

        print(is_loaded("inspect"), "ast" in sys.modules)
        from inspect import Parameter, signature
        print(is_loaded("inspect"), "ast" in sys.modules)
        print(sys.modules["inspect"] is held, type(held) is types.ModuleType)
        print(signature(lambda a, *, b=2: None), Parameter is inspect.Parameter)
        # a dataclass without a docstring gets the one inspect writes
        @dataclasses.dataclass
        class Pair:
            left: int
            right: str
        print(Pair.__doc__)
        try:
            inspect.no_such_name
        except AttributeError as exc:
            print("AttributeError", "no_such_name" in str(exc))
        print(defer("inspect"), defer("no_such_module_anywhere"))
        """
    )
    # from 3.12 on dataclasses reads every class's annotations through inspect
    eager = sys.version_info >= (3, 12)
    assert lines == [
        "True",
        f"{eager} {eager}",
        "True True",
        "True True",
        "(a, *, b=2) True",
        "Pair(left: int, right: str)",
        "AttributeError True",
        "False False",
    ]


def test_dir_of_a_deferred_module_loads_it_and_lists_its_names() -> None:
    lines = _python(
        """
        from outloop_cli.cli.deferred_modules import defer, is_loaded
        defer("inspect")
        import inspect
        print(is_loaded("inspect"), "signature" in dir(inspect), is_loaded("inspect"))
        """
    )
    assert lines == ["False True True"]


def test_only_what_the_running_python_would_waste_is_deferred() -> None:
    lines = _python(
        """
        import sys
        from outloop_cli.cli.deferred_modules import defer_rarely_used, is_loaded
        defer_rarely_used()
        import dataclasses

        @dataclasses.dataclass(frozen=True)
        class Point:
            "Documented."
            x: int

        print(is_loaded("inspect"), "inspect" in sys.modules)
        """
    )
    # 3.10 and 3.11 leave inspect unloaded; 3.12 and later load it for every dataclass,
    # so nothing is deferred there
    assert lines == (["False True"] if sys.version_info < (3, 12) else ["True True"])


def _slow_module(tmp_path: Path, body: str) -> Path:
    (tmp_path / "slow_to_load.py").write_text(
        "import builtins, time\n"
        "builtins.LOADS = getattr(builtins, 'LOADS', 0) + 1\n"
        "time.sleep(0.3)\n" + body
    )
    return tmp_path


def test_threads_asking_at_once_wait_for_one_load(tmp_path: Path) -> None:
    path = _slow_module(tmp_path, "VALUE = 42\n")
    lines = _python(
        """
        import builtins, threading
        from outloop_cli.cli.deferred_modules import defer
        assert defer("slow_to_load")
        import slow_to_load
        barrier = threading.Barrier(8)
        seen = []

        def ask():
            barrier.wait()
            try:
                seen.append(slow_to_load.VALUE)
            except AttributeError as exc:
                seen.append(repr(exc))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(sorted(map(str, seen)), builtins.LOADS)
        """,
        path=path,
    )
    assert lines == [f"{['42'] * 8} 1"]


def test_a_module_asking_itself_while_it_loads_gets_what_a_partly_loaded_module_answers(
    tmp_path: Path,
) -> None:
    path = _slow_module(
        tmp_path,
        "import slow_to_load\n"
        "try:\n"
        "    slow_to_load.LATER\n"
        "except AttributeError as exc:\n"
        "    EARLY = str(exc)\n"
        "LATER = 1\n",
    )
    lines = _python(
        """
        import builtins
        from outloop_cli.cli.deferred_modules import defer
        defer("slow_to_load")
        import slow_to_load
        print(slow_to_load.LATER, slow_to_load.EARLY, builtins.LOADS)
        """,
        path=path,
    )
    assert lines == ["1 partially initialized module 'slow_to_load' 1"]
