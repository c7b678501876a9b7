"""A sandboxed child (``run_streamed(sandboxed=True)``) is followed by no sweep of the machine, and leaves no zombie.

Runs in a fresh interpreter that adopts orphans, as the CLI does: bubblewrap
sandboxes start one after another, each with a PID namespace of its own whose
init comes to us when bubblewrap exits. After each, the only work is
collecting that init; the machine's process table is never read, and no
zombie piles up across many children.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.e2e import run_python

RUNNER = """
import json, os, sys
from pathlib import Path
from outloop_cli.process import proc, supervise
from outloop_cli.process.spawn import run_streamed
from outloop_cli.process.supervise import adopt_orphans

tables = []
_table = proc.process_table
def counted():
    tables.append(1)
    return _table()
supervise.process_table = counted

def zombies():
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] == "Z":
                found.append(int(name))
    return found

assert adopt_orphans()
line = ["bwrap", "--die-with-parent", "--unshare-user", "--unshare-pid", "--new-session",
        "--ro-bind", "/", "/", "--dev", "/dev", "--", "/bin/sh", "-c", "exit 0"]
env = {"PATH": os.environ["PATH"]}
for i in range(20):
    done = run_streamed(line, cwd=Path.cwd(), env=env, log_path=Path(f"c{i}.log"), sandboxed=True)
    assert done.ok, Path(f"c{i}.log").read_text()
contained_tables = len(tables)
left = zombies()
run_streamed(["/bin/sh", "-c", "exit 0"], cwd=Path.cwd(), env=env, log_path=Path("u.log"))
print(json.dumps({"tables": contained_tables, "zombies": len(left),
                  "uncontained_tables": len(tables) - contained_tables}))
"""


def test_sandboxed_children_read_no_process_table_and_leave_no_zombies(tmp_path: Path) -> None:
    done = run_python(RUNNER, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tables"] == 0
    # the last sandbox's init may still be on its way out; none of the earlier ones is left
    assert report["zombies"] <= 1
    # an agent outside a sandbox is still followed by the sweep's verdict
    assert report["uncontained_tables"] >= 1


SLOW_TEARDOWN = """
import json, os, sys
from pathlib import Path
from outloop_cli.process import supervise
from outloop_cli.process.spawn import run_streamed
from outloop_cli.process.supervise import adopt_orphans

if os.environ["OUTLOOP_TEST_MODE"] == "control":
    # the check before the fix: any process not yet a zombie counts as left running
    supervise._may_run = lambda pid, info: info.alive

assert adopt_orphans()
# thousands of mounts make the kernel's teardown of the sandbox's init last well
# past bubblewrap's own exit; the command runs long enough to be seen in the tree
mounts = [arg for i in range(3000) for arg in ("--tmpfs", f"/tmp/m{i}")]
line = ["bwrap", "--die-with-parent", "--unshare-user", "--unshare-pid", "--new-session",
        "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/tmp", *mounts,
        "--", "/bin/sh", "-c", "sleep 0.8"]
env = {"PATH": os.environ["PATH"]}
claims = 0
for i in range(3):
    done = run_streamed(line, cwd=Path.cwd(), env=env, log_path=Path(f"c{i}.log"), sandboxed=True)
    assert done.ok, Path(f"c{i}.log").read_text()
    claims += "left running" in Path(f"c{i}.log").read_text()
print(json.dumps({"claims": claims}))
"""


def test_a_sandbox_whose_init_is_still_being_torn_down_left_nothing_running(
    tmp_path: Path,
) -> None:
    # bubblewrap exits once its init reports the command's status; the init is then
    # past the point of no return, and is neither killed nor reported as left running
    done = run_python(SLOW_TEARDOWN, tmp_path, env={"OUTLOOP_TEST_MODE": "fixed"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"claims": 0}

    control = run_python(SLOW_TEARDOWN, tmp_path, env={"OUTLOOP_TEST_MODE": "control"})
    assert control.returncode == 0, control.stderr
    assert json.loads(control.stdout)["claims"] >= 2
