"""Entry point: turns every outloop error into its exit code, in one place.

``outloop --version`` is answered before typer (and everything else) is
imported, so scripts that probe the version pay ~nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from outloop_cli import __version__

        sys.stdout.write(f"outloop {__version__}\n")
        return 0
    return _dispatch(args)


def _dispatch(args: list[str]) -> int:
    import typer
    import typer.main

    from outloop_cli.cli import app
    from outloop_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, OutloopError

    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="outloop", standalone_mode=False)
    except OutloopError as exc:
        sys.stderr.write(exc.render() + "\n")
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
    sys.exit(main())


if __name__ == "__main__":
    entry()
