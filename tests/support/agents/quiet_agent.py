"""Test agent: says one thing, then hangs silently."""

import time

print("quiet agent: thinking...", flush=True)
time.sleep(600)
