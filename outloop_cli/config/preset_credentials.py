"""A loop's ``credentials:`` entries completed: from its preset's credential, and by their header.

Two rules a user expects, applied once the file itself is valid:

* an entry named like the agent preset's own credential (``anthropic`` for
  ``preset: claude``) changes only the keys it writes: ``anthropic: {upstream:
  https://llm-gateway.corp/anthropic}`` keeps the preset's ``env``, ``header`` and
  ``scheme``. Writing another ``via`` than the preset's starts from scratch;
* ``scheme`` left out means ``Bearer`` for an ``Authorization`` header and the
  bare key for any other (``x-api-key: <key>``, as every such API wants it).

What is then still missing (a proxy's ``upstream`` or ``env``, a git ``host``)
is reported at the entry, with file, line and column.
"""

from __future__ import annotations

import dataclasses

from yaml.nodes import MappingNode, Node, ScalarNode

from outloop_cli.config.model import CredentialConfig, LoopConfig
from outloop_cli.config.spec import Context

# what each `via` needs once the preset's fields are in
_NEEDS = {
    "proxy": (
        ("upstream", "the API the proxy forwards to, e.g. `upstream: https://api.openai.com`"),
        ("env", "the variable that gives the agent the proxy's URL, e.g. `env: OPENAI_BASE_URL`"),
    ),
    "git": (("host", "the git host these credentials are for, e.g. `host: github.com`"),),
}
_FIELDS = tuple(f.name for f in dataclasses.fields(CredentialConfig) if f.name != "name")


def default_scheme(header: str) -> str:
    """``Bearer`` goes with ``Authorization`` only; any other header carries the bare key."""
    return "Bearer" if header.lower() == "authorization" else ""


def check_credentials(root: Node, ctx: Context) -> None:
    """Report what each ``credentials:`` entry still lacks once its preset's fields are in.

    Read from the nodes, so that it is said together with the file's other problems.
    """
    from outloop_cli.agents.registry import default_credentials

    preset_name = _child(_child(root, "agent"), "preset")
    preset = {}
    if isinstance(preset_name, ScalarNode):
        preset = {c.name: c for c in default_credentials(str(preset_name.value))}
    for name, node in _entry_nodes(root).items():
        written = _written_keys(node)
        via_node = _child(node, "via")
        via = str(via_node.value) if isinstance(via_node, ScalarNode) else "proxy"
        base = preset.get(name)
        have = set(written)
        if base is not None and ("via" not in written or via == base.via):
            have |= {key for key in _FIELDS if getattr(base, key) is not None}
        for key, what in _NEEDS.get(via, ()):
            if key not in have:
                hint = f"add {what}"
                if base is not None and via != base.via:
                    hint += f" (with `via: {via}`, nothing comes from the preset's `{name}`)"
                ctx.report(
                    node, ("credentials", name), f"missing `{key}`, needed when via is {via}", hint
                )


def complete_credentials(config: LoopConfig, root: Node) -> LoopConfig:
    """``config`` with every credential completed from its preset's and its header."""
    if not config.credentials:
        return config
    from outloop_cli.agents.registry import default_credentials

    preset = {c.name: c for c in default_credentials(config.agent.preset)}
    nodes = _entry_nodes(root)
    done: list[CredentialConfig] = []
    for entry in config.credentials:
        written = _written_keys(nodes.get(entry.name))
        base = preset.get(entry.name)
        if base is not None and ("via" not in written or entry.via == base.via):
            merged = dataclasses.replace(
                base, **{key: getattr(entry, key) for key in _FIELDS if key in written}
            )
            if "scheme" not in written and "header" in written:
                merged = dataclasses.replace(merged, scheme=default_scheme(merged.header))
        else:
            merged = entry
        if merged.scheme is None and merged.via == "proxy":
            merged = dataclasses.replace(merged, scheme=default_scheme(merged.header))
        done.append(merged)
    return dataclasses.replace(config, credentials=tuple(done))


def _entry_nodes(root: Node) -> dict[str, MappingNode]:
    creds = _child(root, "credentials")
    out: dict[str, MappingNode] = {}
    if isinstance(creds, MappingNode):
        for key, value in creds.value:
            if isinstance(key, ScalarNode) and isinstance(value, MappingNode):
                out.setdefault(str(key.value), value)
    return out


def _written_keys(node: MappingNode | None) -> set[str]:
    if node is None:
        return set()
    return {str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)}


def _child(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for k, value in node.value:
        if isinstance(k, ScalarNode) and k.value == key:
            found: Node = value
            return found
    return None
