#!/usr/bin/env bash
# The escape suite (tests/security, tests/sandbox, and the worktree-reuse attacks:
# a tree an agent left behind for the next run) run a second time as the user
# the main suite is NOT: the sandbox must hold as root (CI containers) and as a
# normal user, and each gives an attacker different means.
#
#   as root:   creates the user `outloop-ci`, gives it a clean clone of this
#              checkout and a venv of its own, and runs the suite as that user
#   as a user: runs the suite as root through `sudo -n` when it is allowed,
#              and otherwise says plainly that the root half was not run
#
# Idempotent: the user and the venv are made once; the clone is fresh each time.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=(tests/security tests/sandbox tests/e2e/test_worktree_reuse.py tests/git/test_fresh_checkout.py)

if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then
        echo "== escape suite as root (the main suite ran as $(id -un))"
        exec sudo -n --preserve-env=PATH .venv/bin/pytest -q -p no:randomly "${suite[@]}"
    fi
    echo "== escape suite as root: NOT RUN (no passwordless sudo); the main suite ran as $(id -un)"
    exit 0
fi

user=outloop-ci
home=/var/tmp/outloop-ci-home
work=/var/tmp/outloop-ci-escape
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --home-dir "$home" --create-home --shell /bin/bash "$user"
fi
mkdir -p "$home" && chown "$user:" "$home" && chmod 0700 "$home"

rm -rf "$work/repo"
mkdir -p "$work" && chown "$user:" "$work"
# a clone holds only what is committed (CI runs a clean clone anyway), then it is the user's
git clone -q --no-hardlinks "file://$PWD" "$work/repo"
chown -R "$user:" "$work/repo"

as_user() {
    runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" \
        PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

venv="$home/venv"
stamp="$venv/.outloop-deps"
deps="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$deps" ]; then
    rm -rf "$venv"
    # the system Python: a pyenv Python under /root is not readable by another user
    as_user /usr/bin/python3 -m venv "$venv"
    as_user "$venv/bin/python" -m pip install --quiet --upgrade pip
    as_user sh -c "cd '$work/repo' && '$venv/bin/python' -m pip install --quiet -e '.[dev]'"
    echo "$deps" | as_user tee "$stamp" >/dev/null
else
    as_user sh -c "cd '$work/repo' && '$venv/bin/python' -m pip install --quiet --no-deps -e ."
fi

echo "== escape suite as $user (uid $(id -u "$user")); the main suite ran as root"
as_user sh -c "cd '$work/repo' && '$venv/bin/pytest' -q -p no:randomly ${suite[*]}"
