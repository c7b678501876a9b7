"""Child processes: spawning, supervision of whole trees, log sinks, and the one /proc reader.

``spawn.py`` is the seam the rest of outloop calls (``run_streamed``,
``run_captured``); ``supervise.py`` watches and kills a child's tree and
sweeps its orphans; ``sinks.py`` moves its bytes to the log; ``proc.py`` is
the only module that reads ``/proc``; ``leftovers.py`` finds a crashed run's
processes; ``environment.py`` builds a child's environment from an allow-list;
``forked.py`` splits CPU-bound checks over forked copies of this process.
"""
