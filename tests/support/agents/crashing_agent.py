"""Test agent: writes a file, then dies of a signal (SIGABRT), as a crashing CLI would."""

import os
from pathlib import Path

Path("before-crash.txt").write_text("about to crash\n")
os.abort()
