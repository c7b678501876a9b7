"""Starting children from many threads: starts never wait for each other, only for a sweep.

`outloop run --repo … --jobs 8` runs eight loops in one process, each starting
git, the agent and the goal from its own thread. A start holds the orphanage's
gate from fork to registration so that a sweep never takes a child that is
not registered yet for an orphan; that must not make the starts of other runs
wait for each other, and a trusted child's end (every git command) must not
make anyone wait at all.
"""

from __future__ import annotations

import subprocess
import threading

from outloop_cli.process import supervise
from outloop_cli.process.supervise import Child, Orphans, _SpawnGate

DEADLINE = 20.0


def _true(stdin: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["true"], stdin=stdin)


def test_a_start_goes_on_while_another_thread_is_in_the_middle_of_one() -> None:
    inside = threading.Event()
    second_done = threading.Event()
    result: dict[str, bool] = {}

    def slow(stdin: int) -> subprocess.Popen[bytes]:
        inside.set()
        # with one lock around every start, the second start below could never finish
        result["second finished meanwhile"] = second_done.wait(DEADLINE)
        return _true(stdin)

    children: list[Child] = []
    first = threading.Thread(
        target=lambda: children.append(Child.start(slow, stdin_data=None, orphans=Orphans.LEAVE))
    )
    first.start()
    assert inside.wait(DEADLINE)
    children.append(Child.start(_true, stdin_data=None, orphans=Orphans.LEAVE))
    second_done.set()
    first.join(DEADLINE)
    assert result == {"second finished meanwhile": True}
    for child in children:
        child.proc.wait()
        supervise._orphanage.release(child.pid)


def test_a_sweep_waits_for_starts_and_starts_wait_for_a_sweep() -> None:
    gate = _SpawnGate()
    order: list[str] = []
    sweep_entered = threading.Event()

    def sweep() -> None:
        with gate.sweeping():
            sweep_entered.set()
            order.append("sweep")

    with gate.starting():
        sweeper = threading.Thread(target=sweep)
        sweeper.start()
        # the sweep cannot begin while a start is inside
        assert not sweep_entered.wait(0.2)
        order.append("start")
    sweeper.join(DEADLINE)
    assert order == ["start", "sweep"]
    assert gate.waits == 0

    # a sweep inside: a start waits for it, and is counted
    release = threading.Event()

    def long_sweep() -> None:
        with gate.sweeping():
            sweep_entered.set()
            release.wait(DEADLINE)

    sweep_entered.clear()
    sweeper = threading.Thread(target=long_sweep)
    sweeper.start()
    assert sweep_entered.wait(DEADLINE)
    starter = threading.Thread(target=lambda: gate.starting().__enter__())
    starter.start()
    release.set()
    starter.join(DEADLINE)
    sweeper.join(DEADLINE)
    assert gate.waits == 1


def test_the_end_of_a_trusted_child_sweeps_nothing_and_blocks_no_start() -> None:
    orphanage = supervise._orphanage
    child = Child.start(_true, stdin_data=None, orphans=Orphans.LEAVE)
    child.proc.wait()
    # a sweep elsewhere is in progress (the gate held exclusively): a git command's end
    # must not queue behind it, nor take the gate itself
    with orphanage.gate.sweeping():
        done = threading.Event()

        def end() -> None:
            orphanage.release(child.pid)
            done.set()

        threading.Thread(target=end).start()
        assert done.wait(DEADLINE)
