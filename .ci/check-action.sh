#!/usr/bin/env bash
# Validate action.yml and the example workflows against the SchemaStore schemas that
# check-jsonschema vendors (github-actions, github-workflows): works offline.
# Then zizmor's security audits (template injection, unpinned uses, permissions…).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK="${CHECK_JSONSCHEMA:-.venv/bin/check-jsonschema}"
"$CHECK" --builtin-schema vendor.github-actions action.yml
"$CHECK" --builtin-schema vendor.github-workflows templates/workflows/*.yml
# and zizmor's audits at its default level (offline: no GitHub API), no findings allowed
ZIZMOR="${ZIZMOR:-.venv/bin/zizmor}"
"$ZIZMOR" --offline action.yml templates/workflows/
