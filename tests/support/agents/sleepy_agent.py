"""Test agent: does a little work, then sleeps (to be interrupted or killed)."""

import sys
import time
from pathlib import Path

Path("partial.txt").write_text("half done\n")
Path(sys.argv[1]).write_text("started\n")
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 600)
