#!/bin/bash
# The floor of bench/section_runner.py: one loop run done by hand with plain git.
#
#   raw_git_loop.sh REPO WORKTREE BRANCH ITERATIONS [bwrap|none]
#
# The essential steps of a run of the benchmark's loop: a worktree on a new
# branch cut from HEAD, the baseline goal check, then per iteration: the
# agent, stage everything, commit (empty when nothing changed), the goal.
# The agent and goal lines are the very commands of the benchmark's loop
# file (AGENT_SCRIPT and GOAL in section_runner.py): the agent notes the time
# its turn started in bench-stamps.log (ignored by the repository's
# .gitignore) and writes one file.
#
# With `bwrap` (the default, as outloop's default sandbox) the agent and the
# goal each run under a minimal bubblewrap line with the same kinds of
# isolation a run's sandbox has: own user (no capabilities), PID, network,
# IPC and UTS namespaces, a new session, the system read-only, a fresh /proc,
# /dev and /tmp, the worktree and the repository's git dir writable. outloop's
# view is narrower (an allow-list of /etc, the agent's own git dir), which
# costs it more bind mounts: that difference is outloop's own cost.
set -eu
repo=$1
worktree=$2
branch=$3
iterations=$4
sandbox=${5:-bwrap}

git -C "$repo" worktree add --quiet -b "$branch" "$worktree" HEAD
cd "$worktree"
git_dir=$(git -C "$repo" rev-parse --absolute-git-dir)

sandboxed=()
if [ "$sandbox" = bwrap ]; then
    sandboxed=(bwrap --die-with-parent --new-session --unshare-user --cap-drop ALL
        --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup-try)
    for dir in /usr /bin /sbin /lib /lib32 /lib64 /libx32; do
        if [ -L "$dir" ]; then
            sandboxed+=(--symlink "$(readlink "$dir")" "$dir")
        elif [ -d "$dir" ]; then
            sandboxed+=(--ro-bind "$dir" "$dir")
        fi
    done
    sandboxed+=(--ro-bind /etc /etc --dev /dev --proc /proc --tmpfs /tmp
        --bind "$worktree" "$worktree" --bind "$git_dir" "$git_dir" --chdir "$worktree" --)
fi

"${sandboxed[@]}" /bin/sh -c false || true
i=1
while [ "$i" -le "$iterations" ]; do
    "${sandboxed[@]}" /bin/bash -c "echo \$EPOCHREALTIME >> bench-stamps.log; echo $i > bench-touched.txt"
    git add --all
    git commit --quiet --allow-empty --message "iteration $i"
    "${sandboxed[@]}" /bin/sh -c false || true
    i=$((i + 1))
done
