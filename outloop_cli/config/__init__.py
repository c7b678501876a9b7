"""Loop configuration: read, validate, describe."""

from outloop_cli.config.discover import LOOP_DIR, find_loop_files, loop_file_candidates
from outloop_cli.config.loader import (
    check_files,
    check_loop_bytes,
    check_loop_file,
    check_loop_text,
    load_loop_bytes,
    load_loop_file,
    load_loop_text,
)
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.schema import json_schema
from outloop_cli.config.values import format_duration, parse_duration, parse_size

__all__ = [
    "LOOP_DIR",
    "LoopConfig",
    "check_files",
    "check_loop_bytes",
    "check_loop_file",
    "check_loop_text",
    "find_loop_files",
    "format_duration",
    "json_schema",
    "load_loop_bytes",
    "load_loop_file",
    "load_loop_text",
    "loop_file_candidates",
    "parse_duration",
    "parse_size",
]
