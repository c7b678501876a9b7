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

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.config.locate import child
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

    preset_name = child(child(root, "agent"), "preset")
    preset = {}
    if isinstance(preset_name, ScalarNode):
        preset = {c.name: c for c in default_credentials(str(preset_name.value))}
    for name, node in _entry_nodes(root).items():
        written = _written_keys(node)
        via_node = child(node, "via")
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


def check_completed(config: LoopConfig, root: Node, ctx: Context) -> None:
    """Rules across the completed credentials and the agent's environment.

    * two credentials must not hand their proxy URL to the agent in the same variable;
    * ``agent.env`` must not set a variable a credential gives the proxy's URL in
      (outloop's value would silently win);
    * an ``allow`` rule must be able to match a path under the ``upstream``: the
      proxy matches rules against the whole path, so with ``upstream: …/v1`` a rule
      ``POST /chat/*`` would refuse every request.
    """
    from outloop_cli.agents.registry import default_credentials

    nodes = _entry_nodes(root)
    owner: dict[str, str] = {}
    named = {c.name for c in config.credentials}
    # the preset's own credential, when the loop does not name it, sets its variable too
    for default in default_credentials(config.agent.preset):
        if default.name not in named and default.env is not None:
            owner[default.env] = f"`{default.name}` (the {config.agent.preset} preset's)"
    for cred in config.credentials:
        node = nodes.get(cred.name)
        if cred.via != "proxy" or node is None:
            continue
        if cred.env is not None:
            first = owner.setdefault(cred.env, f"`{cred.name}`")
            if first != f"`{cred.name}`":
                ctx.report(
                    child(node, "env") or node,
                    ("credentials", cred.name, "env"),
                    f"`{cred.env}` is also the variable of credential {first}",
                    "give each credential its own variable; the agent would get one proxy URL",
                )
        base = _base_path(cred.upstream)
        rules = child(node, "allow")
        for index, rule in enumerate(cred.allow):
            if not _can_match(rule.partition(" ")[2], base):
                at = rules.value[index] if isinstance(rules, SequenceNode) else node
                ctx.report(
                    at,
                    ("credentials", cred.name, "allow", index),
                    f"{rule!r} can never match: every path the proxy forwards starts with "
                    f"`{base}` (the upstream's path)",
                    f'rules match the whole path on the upstream: write e.g. "POST {base}/*"',
                )
    # (a preset's own variable stays the loop's to set: without a granted key, the agent
    # may well be meant to talk to a local model server there)
    asked = {c.env for c in config.credentials if c.via == "proxy" and c.env is not None}
    env_node = child(child(root, "agent"), "env")
    if isinstance(env_node, MappingNode):
        for key, _ in env_node.value:
            if isinstance(key, ScalarNode) and key.value in asked:
                ctx.report(
                    key,
                    ("agent", "env"),
                    f"`{key.value}` is where credential {owner[key.value]} gives the agent "
                    "the proxy's URL",
                    "leave it out: outloop sets it for the run; to use another API, set the "
                    "credential's `upstream` (your policy must allow it)",
                )


def _base_path(upstream: str | None) -> str:
    import urllib.parse

    return urllib.parse.urlsplit(upstream or "").path.rstrip("/")


def _can_match(pattern: str, base: str) -> bool:
    """Whether ``pattern`` (``*`` any text) matches ``base`` or some ``base/…``."""
    if not base:
        return True
    literal, star, _ = pattern.partition("*")
    if not star:
        return pattern == base or pattern.startswith(base + "/")
    return literal == base or literal.startswith(base + "/") or (base + "/").startswith(literal)


def _entry_nodes(root: Node) -> dict[str, MappingNode]:
    creds = child(root, "credentials")
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
