"""A child of its own kernel session keyring: what the runner's session holds stays out.

Every process inherits its parent's session keyring, through ``fork`` and
``exec``, and through bubblewrap's namespaces too: a key the user's login (or
a CI step's ``keyctl``) put there can be requested and read by anything the
runner starts (``keyctl request user NAME`` then ``keyctl print``). A
sandboxed child therefore joins a new anonymous session keyring before it
execs bubblewrap, as ``keyctl session -`` does: ``KEYCTL_JOIN_SESSION_KEYRING``
with no name. The user keyring is the user namespace's own inside the sandbox.

The call is prepared in the parent, so that the child, between ``fork`` and
``exec``, only makes one system call.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable

from outloop_cli.errors import CouldNotRun

# the keyctl system call's number per machine (asm/unistd.h)
_SYS_KEYCTL = {
    "x86_64": 250,
    "amd64": 250,
    "aarch64": 219,
    "arm64": 219,
    "riscv64": 219,
    "loongarch64": 219,
    "i386": 288,
    "i686": 288,
    "armv7l": 311,
    "armv6l": 311,
    "ppc64le": 310,
    "ppc64": 310,
    "s390x": 280,
}
_KEYCTL_JOIN_SESSION_KEYRING = 1


@functools.cache
def joiner() -> Callable[[], None]:
    """A function for ``preexec_fn``: joins a new anonymous session keyring, or raises."""
    # imported here: every command imports the process seam, few start a sandbox
    import ctypes

    machine = os.uname().machine
    number = _SYS_KEYCTL.get(machine)
    if number is None:
        raise CouldNotRun(
            f"cannot give the sandbox a keyring of its own on this machine ({machine})",
            hint="run with `sandbox: none` to go on without it (the kernel keyring stays visible)",
        )
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p]

    def join() -> None:
        if syscall(number, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            code = ctypes.get_errno()
            # a kernel built without keys has no keyring to leak
            if code != errno.ENOSYS:
                raise OSError(code, "could not join a new session keyring")

    return join
