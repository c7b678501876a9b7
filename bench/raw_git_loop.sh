#!/bin/sh
# The baseline of bench/runner_overhead.py: one loop run done by hand with plain git.
#
#   raw_git_loop.sh REPO WORKTREE BRANCH ITERATIONS
#
# The same steps outloop takes for the benchmark's loop: a worktree on a
# scratch branch cut from HEAD, the baseline goal check, then per iteration:
# the agent, stage everything, commit (empty when nothing changed), the goal.
# The agent and goal lines are the very commands of the benchmark's loop file
# (see AGENT_SCRIPT and GOAL in runner_overhead.py): the agent writes one file
# and appends the time its turn started to $BENCH_STAMPS.
set -eu
repo=$1
worktree=$2
branch=$3
iterations=$4

git -C "$repo" worktree add --quiet -b "$branch" "$worktree" HEAD
cd "$worktree"
/bin/sh -c false || true
i=1
while [ "$i" -le "$iterations" ]; do
    /bin/bash -c "echo \$EPOCHREALTIME >> \"\$BENCH_STAMPS\"; echo $i > bench-touched.txt"
    git add --all
    git commit --quiet --allow-empty --message "iteration $i"
    /bin/sh -c false || true
    i=$((i + 1))
done
