"""Where a key is in a loop file: its line and column, for messages about a valid file.

Validation reports positions as it goes; a decision taken later (the policy
refusing where a credential would send its key) finds the spot again here,
from the same text the config was read from.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode


def locate(text: str, paths: Sequence[Sequence[str]]) -> tuple[str, int, int] | None:
    """The first of ``paths`` (key paths such as ``("credentials", "api", "upstream")``) found.

    Returns the key path as written (``credentials.api.upstream``), its line and
    its column (1-based), pointing at the value; None when none is in the text.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    for path in paths:
        node = _find(root, path)
        if node is not None:
            mark = node.start_mark
            return ".".join(path), int(mark.line) + 1, int(mark.column) + 1
    return None


def _find(node: Node | None, path: Sequence[str]) -> Node | None:
    for key in path:
        if not isinstance(node, MappingNode):
            return None
        node = next(
            (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key),
            None,
        )
    return node


def child(node: Node | None, key: str) -> Node | None:
    """The value node of ``key`` in a mapping node; None for anything else."""
    return _find(node, (key,))
