"""The policy file's schema (``~/.config/outloop/policy.yml``), declared once.

Declared with the same framework as the loop file (:mod:`outloop_cli.config.spec`),
so the validator and :func:`json_schema` come from this one declaration too.
Loading the file, the rules across workspaces and matching a repo to its
workspace are :mod:`outloop_cli.credentials.policy`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node

from outloop_cli.config import values as v
from outloop_cli.config.egress_schema import EGRESS_RULES, check_network
from outloop_cli.config.policy_model import EgressPolicy, Policy, SecretEntry, Workspace
from outloop_cli.config.spec import Context, JSONSchema, KeyPath, Spec, document_schema
from outloop_cli.config.spec_collections import Field, ListOf, MapOf, Obj
from outloop_cli.config.spec_scalars import Bool, Str
from outloop_cli.credentials.remotes import has_credentials, normalize_remote

EGRESS_POLICY = Obj(
    EgressPolicy,
    (
        Field(
            "allow",
            EGRESS_RULES,
            "Hosts (`host:port`, `*.` as the first label allowed) that sandboxed runs of this "
            "workspace may reach through outloop's egress proxy, when their loop asks "
            "(`egress:`).",
            example='["pypi.org:443", "files.pythonhosted.org:443"]',
        ),
        Field(
            "reach_private",
            ListOf(Str("an address range", check_text=check_network), unique=True),
            "Address ranges that are not public (loopback, private, link-local) which those "
            "hosts may resolve to; every other such address is refused after resolution.",
            example='["10.20.0.0/16"]',
        ),
    ),
)

_NAME = Str(
    "a name",
    v.CREDENTIAL_NAME_PATTERN,
    hint="use lowercase letters, digits, '_' and '-', e.g. client-a",
)


def check_repo_pattern(text: str) -> str:
    """A remote pattern (``host/path`` or a git URL) or an absolute path pattern."""
    if not text.strip() or text != text.strip():
        raise v.BadValue(f"{text!r} has leading or trailing spaces, or is empty")
    if text.startswith(("/", "~")):
        if text.startswith("~") and text != "~" and not text.startswith("~/"):
            raise v.BadValue(
                f"{text!r}: only `~/` (your home) is expanded", "write the full path instead"
            )
        return text
    if text.startswith("."):
        raise v.BadValue(
            f"{text!r} is a relative path",
            "path patterns must be absolute (start with / or ~/)",
        )
    if has_credentials(text):
        raise v.BadValue(
            f"{v.without_userinfo(text)!r} contains credentials, which are not shown here",
            "write the remote without user:password@; keys belong in `outloop secrets set`",
        )
    normal = normalize_remote(text)
    if normal is None or "/" not in normal:
        raise v.BadValue(
            f"{text!r} is neither a remote (host/path) nor an absolute path",
            "write e.g. github.com/agency/client-a-* or /home/me/src/client-a",
        )
    return text


_SECRET_NAME = Str(
    "a secret name",
    v.CREDENTIAL_NAME_PATTERN,
    hint="use lowercase letters, digits, '_' and '-', e.g. openai",
)


def check_upstream_prefix(text: str) -> str:
    """Where a proxied key may go: ``https://host[:port][/path-prefix]``, nothing else."""
    v.check_url(text)
    return text


SECRET = Obj(
    SecretEntry,
    (
        Field(
            "name", _SECRET_NAME, "The secret's name (stored as <workspace>/<name>).", required=True
        ),
        Field(
            "upstreams",
            ListOf(
                Str("an https URL", v.URL_PATTERN, check_upstream_prefix),
                unique=True,
            ),
            "Where `via: proxy` may send this key, and where a forge token's API may be: "
            "scheme, host and port must match, the path must lie under the URL's path. "
            "Default: the secret's well-known API (openai, anthropic, gemini, github, gitlab); "
            "none for other names.",
            example='["https://crm.example.com/api"]',
        ),
        Field(
            "hosts",
            ListOf(Str("a host name", v.HOST_PATTERN, v.check_host), unique=True),
            "Git hosts (host[:port]) this key may be given to (`via: git`, outloop's push). "
            "Default: github.com for `github`, gitlab.com for `gitlab`; none for other names.",
            example="[github.com]",
        ),
        Field(
            "helper",
            Bool(),
            "Allow `via: helper`, which hands the raw value to the agent (it can then go "
            "anywhere). Default: false.",
        ),
    ),
    unknown_hint="a secret is `name:` with `upstreams:`, `hosts:` or `helper:`",
)


@dataclass(frozen=True)
class SecretSpec(Spec):
    """A secret of a workspace: its name alone, or a mapping that also says where it may go."""

    what = "a secret name or a mapping with `name:`"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        where = {"line": int(node.start_mark.line) + 1, "col": int(node.start_mark.column) + 1}
        if isinstance(node, MappingNode):
            return SECRET.check(node, path, ctx, where)
        name = _SECRET_NAME.check(node, path, ctx)
        if not isinstance(name, str):
            return name
        return SecretEntry(name=name, line=where["line"], col=where["col"])

    def schema(self) -> JSONSchema:
        return {"oneOf": [_SECRET_NAME.schema(), SECRET.schema()]}


WORKSPACE = Obj(
    Workspace,
    (
        Field(
            "repos",
            ListOf(
                Str("a repo pattern", check_text=check_repo_pattern),
                min_items=1,
                unique=True,
                empty_hint="a workspace needs at least one repo pattern",
            ),
            "Remotes (host/path, * and ** allowed) or absolute paths of the repos in this workspace.",
            required=True,
        ),
        Field(
            "secrets",
            ListOf(SecretSpec()),
            "The secrets runs in this workspace may use (stored as <workspace>/<name>): a name, "
            "or `{name: N, upstreams: [...], hosts: [...]}` to say where its value may go.",
        ),
        Field(
            "egress",
            EGRESS_POLICY,
            "What sandboxed runs of this workspace may reach beyond the broker; nothing when "
            "absent.",
        ),
    ),
)

POLICY = Obj(
    Policy,
    (
        Field(
            "workspaces",
            MapOf(_NAME, WORKSPACE, key_into="name"),
            "Workspaces by name.",
            required=True,
        ),
    ),
    unknown_hint="workspaces go under `workspaces:`",
)


POLICY_SCHEMA_ID = "https://outloop.dev/schema/policy.json"


def json_schema() -> JSONSchema:
    """The policy file as JSON Schema (draft 2020-12), from the same declaration as the validator."""
    return document_schema(
        POLICY,
        schema_id=POLICY_SCHEMA_ID,
        title="outloop policy (~/.config/outloop/policy.yml)",
        description="Which repos belong to which workspace, and which secrets each may use.",
    )
