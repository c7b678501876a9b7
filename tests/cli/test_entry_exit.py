"""How the process entry point leaves: the exit code kept, the last collection spared.

``entry()`` freezes what is alive before ``sys.exit`` so Python's exit does not
walk every object once more (see ``outloop_cli/main.py``). These tests hold it
to the parts of a normal exit that matter: the verb's exit code, atexit
handlers, and output written to a pipe.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli import main as entry_module


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    # the test process goes on: what entry() froze is handed back to the collector
    gc.unfreeze()


def test_entry_freezes_what_is_alive_and_exits_with_the_verbs_code(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setattr(entry_module, "main", lambda: 3)
    assert gc.get_freeze_count() == 0
    with pytest.raises(SystemExit) as exited:
        entry_module.entry()
    assert exited.value.code == 3
    assert gc.get_freeze_count() > 0


def test_atexit_handlers_and_piped_output_survive_the_exit(tmp_path: Path) -> None:
    marker = tmp_path / "atexit-ran"
    script = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        "sys.argv = ['outloop', '--version']\n"
        "from outloop_cli.main import entry\n"
        "entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("outloop ")
    assert marker.read_text() == "ran"
