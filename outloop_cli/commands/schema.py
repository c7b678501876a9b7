"""``outloop schema``: the loop file's JSON Schema, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.config import json_schema
from outloop_cli.fsutil import atomic_write_text
from outloop_cli.paths import cache_home


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def schema_path() -> Path:
    """A file holding the schema, refreshed when it differs, for `# yaml-language-server: $schema=`."""
    from outloop_cli import __version__

    path = cache_home() / f"loop-schema-{__version__}.json"
    text = schema_text()
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text, durable=False)
    return path
