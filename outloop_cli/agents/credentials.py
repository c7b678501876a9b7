"""The model-API credential each agent preset brings (SPEC §2), as data.

Kept apart from the backends so that the loop file's validator can fill a
loop's partial ``credentials:`` entry from its preset's (an entry named like
the preset's credential overrides single fields) without importing any agent.
Where these keys may go is the policy's to say; a bare secret name in the
policy allows exactly these APIs (:data:`outloop_cli.credentials.bindings.WELL_KNOWN`).
"""

from __future__ import annotations

from outloop_cli.config.model import CredentialConfig

ANTHROPIC = CredentialConfig(
    name="anthropic",
    via="proxy",
    upstream="https://api.anthropic.com",
    env="ANTHROPIC_BASE_URL",
    header="x-api-key",
    scheme="",
)

# Both codex and aider talk to OpenAI's API (SPEC §2: their default credential is `openai`).
OPENAI = CredentialConfig(
    name="openai",
    via="proxy",
    upstream="https://api.openai.com/v1",
    env="OPENAI_BASE_URL",
    header="Authorization",
    scheme="Bearer",
)

GEMINI = CredentialConfig(
    name="gemini",
    via="proxy",
    upstream="https://generativelanguage.googleapis.com",
    env="GOOGLE_GEMINI_BASE_URL",
    header="x-goog-api-key",
    scheme="",
)
