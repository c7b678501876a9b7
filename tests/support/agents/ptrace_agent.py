"""Attacker agent: attaches to a process of the runner's side with ptrace(2), as root would.

Argument: the victim's pid (a process outside the sandbox). Prints one JSON
line: the attach's result and errno. A successful attach is detached again
at once.
"""

import ctypes
import json
import os
import sys
import time

PTRACE_ATTACH, PTRACE_DETACH = 16, 17
victim = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
result = libc.ptrace(PTRACE_ATTACH, victim, None, None)
errno = ctypes.get_errno()
if result == 0:
    time.sleep(0.1)
    libc.ptrace(PTRACE_DETACH, victim, None, None)
print(
    json.dumps({"attached": result == 0, "errno": os.strerror(errno) if errno else ""}), flush=True
)
