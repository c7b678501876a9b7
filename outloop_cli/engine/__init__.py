"""One run of one loop, a module per concern.

- ``plan``: everything read and checked before a side effect (``RunOptions``, ``LoopPlan``).
- ``loop``: ``LoopRun``, only the order of the steps and how a run ends.
- ``context``: ``RunContext``, the run's one mutable place (record, files, audit, clock).
- ``events``: ``Event`` and ``Observer``, what the progress view is told.
- ``start`` / ``resume`` / ``finish``: a fresh run, a run picked up again, the end of a run.
- ``turn``: the agent's turn (prompt, environment, sandbox, masked output).
- ``guards``: git config and hooks, protected paths, secrets in the changes.
- ``commit``: iteration commits, their message and identities.
- ``goal``: the goal check and the clean-up after it.
- ``limits``: pure stop decisions from the run's counters.
- ``access``: the run's secrets, broker and masker; the one place a forge token is resolved.
- ``forge``: push, the CI goal's forge, the pull request.
- ``prompt``: what the agent is told each turn.
"""
