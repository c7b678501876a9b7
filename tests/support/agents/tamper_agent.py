"""Test agent: raises its own iteration limit by editing the loop file, and fixes nothing."""

from pathlib import Path

loop = next(Path(".outloop").glob("*.yml"))
loop.write_text(loop.read_text().replace("max_iterations: 3", "max_iterations: 99"))
Path("work.txt").write_text("did some work\n")
