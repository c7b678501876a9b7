"""The process git runs as outloop's credential helper.

``python -I -c 'import sys; from outloop_cli.credentials.helper_main import
main; sys.exit(main(sys.argv[1:]))' get`` (``git_helper.helper_command``; the
module runs with ``-m`` as well): one operation in argv, git's request on
stdin, the answer on stdout and a note for the user on stderr. A program of
its own, like the sandbox's relay: it starts for every credential request of
every fetch and push, so it imports ``git_answer`` and nothing of the CLI.
``outloop credential get`` answers the same way for a person trying it.
"""

from __future__ import annotations

import sys

from outloop_cli.credentials.git_answer import answer


def _environment() -> dict[str, str]:
    """``os.environ`` as a plain dict, without importing ``os``.

    Started with ``-S``, nothing has imported ``os`` yet, and it would be a
    third of the helper's own start (``_collections_abc`` and the path modules
    come with it). ``posix.environ`` is the same bytes ``os.environ`` decodes,
    and they are decoded here the way it decodes them.
    """
    import posix

    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {
        key.decode(encoding, errors): value.decode(encoding, errors)
        for key, value in posix.environ.items()
    }


def main(argv: list[str]) -> int:
    # git adds the operation as the one argument; anything else is not git calling
    operation = argv[0] if len(argv) == 1 else ""
    reply = answer(operation, sys.stdin.buffer.read(), _environment())
    if reply.message:
        sys.stderr.write(reply.message + "\n")
    sys.stdout.buffer.write(reply.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
