"""Draw docs/ui-dashboard.png: the dashboard over three client repositories, in chromium.

Everything is real and local: three git repositories in a temp dir, three `outloop run`s
of a scripted agent (one converged, one live, one waiting for an approval), `outloop ui`,
and Debian's chromium driven by Playwright. Nothing of the user's own state is read or
written: HOME and the XDG dirs point into the temp dir.

    .venv/bin/python scripts/ui_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.browser import chromium, png_facts  # noqa: E402
from tests.support.dashboard import dashboard_files, running_dashboard  # noqa: E402

OUT = ROOT / "docs" / "ui-dashboard.png"


def _wait(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _repo(base: Path, name: str, files: dict[str, str]) -> Path:
    root = base / name
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


def _outloop(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "outloop_cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="outloop-shot-") as tmp:
        base = Path(tmp)
        home = base / "home"
        for sub in (".config", ".local/state", ".cache"):
            (home / sub).mkdir(parents=True)
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Agency Bot\n\temail = bot@agency.example\n"
        )
        os.environ.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".local/state"),
            XDG_CACHE_HOME=str(home / ".cache"),
            GIT_CONFIG_NOSYSTEM="1",
        )
        gate = base / "gate"
        gate.mkdir()
        acme = _repo(base, "client-acme", dashboard_files(None, goal_target=4))
        globex = _repo(base, "client-globex", dashboard_files(gate, goal_target=6))
        initech = _repo(
            base, "client-initech", dashboard_files(None, 5, approve={"every_iterations": 2})
        )
        subprocess.run(
            [sys.executable, "-m", "outloop_cli", "run", "fix"],
            cwd=acme,
            check=True,
            capture_output=True,
        )
        runners = [_outloop(globex, "run", "fix"), _outloop(initech, "run", "fix")]
        try:
            for n in (1, 2, 3):
                _wait(lambda n=n: (gate / f"waiting-{n}").exists(), f"turn {n}")
                (gate / f"release-{n}").write_text("")
            _wait(lambda: (gate / "waiting-4").exists(), "turn 4")
            runs = globex / ".git" / "outloop" / "runs"
            run_id = next(runs.iterdir()).name
            waiting = initech / ".git" / "outloop" / "runs"
            _wait(
                lambda: any(
                    '"waiting_approval"' in p.read_text() for p in waiting.glob("*/run.json")
                ),
                "the approval gate",
            )
            with running_dashboard(base) as ui, chromium() as browser:
                page = browser.new_page(viewport={"width": 1600, "height": 1250})
                page.goto(ui.url)
                page.wait_for_selector("#conn[data-state=live]")
                page.locator(f'#run-list tbody tr[data-run-id="{run_id}"]').click()
                page.wait_for_selector('#iterations tbody tr[data-n="3"]')
                page.locator('#iterations tbody tr[data-n="3"]').click()
                page.wait_for_selector("#diff-patch .add")
                page.locator("#steer-text").fill("Keep the CRM field names as they are.")
                data = page.screenshot(path=str(out), full_page=False)
            width, height, rows = png_facts(data)
            print(f"wrote {out} ({width}x{height}, {rows} distinct rows)")
        finally:
            for n in range(1, 20):
                (gate / f"release-{n}").write_text("")
            for runner in runners:
                runner.send_signal(2)
            for runner in runners:
                try:
                    runner.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    runner.kill()
                    runner.wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
