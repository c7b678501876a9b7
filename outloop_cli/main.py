"""Entry point: turns every outloop error into its exit code, in one place.

``outloop --version`` and ``outloop --help`` are answered before typer (and
everything else) is imported, so scripts that probe the version, and people
looking for the verbs, pay little more than Python's own start. The common
command lines of a verb with plain options (``status``, ``validate``: see
``cli/plain_argv.py``) run without typer too; everything else goes to typer.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from outloop_cli import __version__

        sys.stdout.write(f"outloop {__version__}\n")
        return 0
    # typer's shell completion reads this variable; let typer answer when it is set
    if args == ["--help"] and "_OUTLOOP_COMPLETE" not in os.environ:
        from outloop_cli.cli.root_help import render

        sys.stdout.write(render())
        return 0
    if len(args) == 2 and args[0] == "credential" and args[1] != "token" and args[1] != "--help":
        return _credential_helper(args[1])
    return _dispatch(args)


def _credential_helper(operation: str) -> int:
    """``outloop credential get|store|erase`` (a person trying the helper, or a git config
    written before the helper had its own entry point): answered as git's helper answers."""
    from outloop_cli.credentials.helper_main import main as helper_main

    return helper_main([operation])


def _dispatch(args: list[str]) -> int:
    # typer's shell completion reads this variable; let typer answer when it is set
    if args and "_OUTLOOP_COMPLETE" not in os.environ:
        from outloop_cli.cli.plain_argv import plain_call

        call = plain_call(args[0], args[1:])
        if call is not None:
            return _plain_dispatch(call)
    return _typer_dispatch(args)


def _plain_dispatch(call: Callable[[], object]) -> int:
    from outloop_cli.errors import EXIT_INTERRUPTED, OutloopError

    try:
        result = call()
    except OutloopError as exc:
        from outloop_cli.safe_text import for_terminal

        sys.stderr.write(for_terminal(exc.render()) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def _typer_dispatch(args: list[str]) -> int:
    import typer
    import typer.main

    from outloop_cli.cli.app import app
    from outloop_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, OutloopError

    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="outloop", standalone_mode=False)
    except OutloopError as exc:
        from outloop_cli.safe_text import for_terminal

        sys.stderr.write(for_terminal(exc.render()) + "\n")
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"error: {exc.format_message()}\n")
        return EXIT_USAGE if exc.exit_code == 2 else int(exc.exit_code)
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The process entry point: CI secrets leave the environment before anything else runs."""
    if any(
        key.startswith("OUTLOOP_SECRET_") or key == "OUTLOOP_CI_SECRETS_FD" for key in os.environ
    ):
        _scrub_ci_secrets()
    code = main()
    # Python's way out walks every object the process made once more, collecting cycles:
    # ~6 ms after `status`'s or `validate`'s imports, a tenth of those commands. What is
    # alive now goes with the process; atexit handlers (which close what needs closing)
    # still run, and files are closed where they are written, so nothing waits on that
    # walk. Frozen objects are left out of it. The rule this keeps: no outloop code may
    # count on a finalizer (__del__, weakref.finalize without atexit) of a garbage cycle.
    gc.freeze()
    sys.exit(code)


def _scrub_ci_secrets() -> None:
    from outloop_cli.credentials.ci_env import (
        github_actions_mask_commands,
        scrub_ci_secrets_at_startup,
    )
    from outloop_cli.errors import OutloopError

    try:
        # re-executes the process (same pid) when OUTLOOP_SECRET_* variables are present,
        # so they vanish from /proc/<pid>/environ too
        scrub_ci_secrets_at_startup()
    except OutloopError as exc:
        sys.stderr.write(exc.render() + "\n")
        sys.exit(exc.exit_code)
    mask_lines = github_actions_mask_commands()
    if mask_lines:
        sys.stdout.write("".join(line + "\n" for line in mask_lines))
        sys.stdout.flush()


if __name__ == "__main__":
    entry()
