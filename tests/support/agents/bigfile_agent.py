"""Test agent: writes a small file, a large one and an ignored one."""

from pathlib import Path

Path("small.txt").write_text("small\n")
Path("big.bin").write_bytes(b"\0" * 3_000_000)
Path("build").mkdir(exist_ok=True)
Path("build/out.o").write_text("ignored\n")
Path("counter.txt").write_text("3\n")
