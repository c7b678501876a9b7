"""``outloop schema``: the loop file's JSON Schema, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.config.loop_schema import json_schema
from outloop_cli.errors import CouldNotRun
from outloop_cli.paths import cache_home
from outloop_cli.store.atomic import atomic_write_text


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def schema_path() -> Path:
    """A file holding the schema, refreshed when it differs, for `# yaml-language-server: $schema=`.

    Raises :class:`CouldNotRun` when the cache directory cannot be written.
    """
    from outloop_cli import __version__

    path = cache_home() / f"loop-schema-{__version__}.json"
    text = schema_text()
    try:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text, durable=False)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CouldNotRun(
            f"cannot write the schema to {path}: {reason}",
            hint="set XDG_CACHE_HOME to a writable directory, or use `outloop schema > FILE`",
        ) from exc
    return path
