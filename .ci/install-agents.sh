#!/usr/bin/env bash
# Install the real coding-agent CLIs at pinned versions into a cache directory,
# so that tests/test_real_clis.py can drive them against the scripted model server.
#
# Idempotent and cached: a rerun with the same pins does nothing. Prints, as its
# last line, the directory to put on PATH (also written to $OUTLOOP_AGENTS_DIR/bin).
#
#   bash .ci/install-agents.sh            # installs into ~/.cache/outloop-ci/agents
#   OUTLOOP_AGENTS_DIR=/opt/agents bash .ci/install-agents.sh
set -euo pipefail

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
GEMINI_CLI_VERSION=0.61.0
AIDER_VERSION=0.86.2

root="${OUTLOOP_AGENTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outloop-ci/agents}"
mkdir -p "$root/bin"

stamp_ok() { [ -f "$root/$1.stamp" ] && [ "$(cat "$root/$1.stamp")" = "$2" ]; }

install_npm() { # name package version bin
  local name=$1 pkg=$2 version=$3 bin=$4
  if stamp_ok "$name" "$version" && [ -x "$root/$name/node_modules/.bin/$bin" ]; then
    echo "== $name $version (cached)" >&2
  else
    echo "== installing $pkg@$version" >&2
    rm -rf "$root/$name"
    mkdir -p "$root/$name"
    npm install --prefix "$root/$name" --no-audit --no-fund --loglevel=error \
      "$pkg@$version" >&2
    echo "$version" >"$root/$name.stamp"
  fi
  ln -sf "$root/$name/node_modules/.bin/$bin" "$root/bin/$bin"
}

install_aider() {
  if stamp_ok aider "$AIDER_VERSION" && [ -x "$root/aider/bin/aider" ]; then
    echo "== aider $AIDER_VERSION (cached)" >&2
  else
    echo "== installing aider-chat==$AIDER_VERSION" >&2
    local py=""
    # aider-chat supports Python 3.10-3.12
    for candidate in python3.12 python3.11 python3.10 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then
        if "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
          py=$candidate
          break
        fi
      fi
    done
    if [ -z "$py" ]; then
      echo "no Python 3.10-3.12 for aider-chat" >&2
      return 1
    fi
    rm -rf "$root/aider"
    "$py" -m venv "$root/aider"
    "$root/aider/bin/python" -m pip install --quiet --upgrade pip >&2
    "$root/aider/bin/python" -m pip install --quiet "aider-chat==$AIDER_VERSION" >&2
    echo "$AIDER_VERSION" >"$root/aider.stamp"
  fi
  ln -sf "$root/aider/bin/aider" "$root/bin/aider"
}

command -v npm >/dev/null 2>&1 || { echo "npm is needed to install the agent CLIs" >&2; exit 1; }
install_npm claude @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" claude
install_npm codex @openai/codex "$CODEX_VERSION" codex
install_npm gemini @google/gemini-cli "$GEMINI_CLI_VERSION" gemini
install_aider
echo "$root/bin"
