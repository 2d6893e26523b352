#!/usr/bin/env bash
# Baseline: the git work of N repo tasks done by hand with plain git, one after
# another, against a bare repo created under WORKDIR. Per task, the same steps
# Optio takes: fetch, worktree add of a fresh branch, write one file, commit,
# push the branch, run the CI command `test -f <file>` in a clean temporary
# worktree of the pushed head, squash-merge onto main in a temporary worktree,
# push main. Setup is not timed; the last line printed is the elapsed seconds.
#
# usage: bench/loop_baseline.sh N WORKDIR
set -euo pipefail

if [[ $# -ne 2 || ! "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 N WORKDIR" >&2
  exit 2
fi
n=$1
mkdir -p "$2"
run_dir=$(mktemp -d "$(cd "$2" && pwd)/baseline.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT

# Same hermetic setup Optio gives its own git calls.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_TERMINAL_PROMPT=0 LC_ALL=C
export GIT_AUTHOR_NAME=Optio GIT_AUTHOR_EMAIL=optio@localhost
export GIT_COMMITTER_NAME=Optio GIT_COMMITTER_EMAIL=optio@localhost
g() { git -c commit.gpgsign=false -c advice.detachedHead=false "$@"; }

remote=$run_dir/remote.git
cache=$run_dir/cache
work=$run_dir/work
mkdir -p "$work"

# -- setup (untimed): a bare remote with one commit on main, and a cache ------
g init --quiet --bare -b main "$remote"
seed=$run_dir/seed
g init --quiet -b main "$seed"
echo "# baseline" >"$seed/README.md"
g -C "$seed" add -A
g -C "$seed" commit --quiet -m initial
g -C "$seed" push --quiet "$remote" main
g init --quiet --bare "$cache"
g -C "$cache" remote add origin "$remote"
g -C "$cache" fetch --quiet --prune origin

# -- the loop (timed) ---------------------------------------------------------
start=$EPOCHREALTIME
for ((i = 1; i <= n; i++)); do
  branch=optio/$i
  wt=$work/task-$i
  file=task-$i.txt

  g -C "$cache" fetch --quiet --prune origin
  g -C "$cache" worktree add --quiet --no-track -b "$branch" "$wt" origin/main

  echo "task $i" >"$wt/$file"
  g -C "$wt" add -A
  g -C "$wt" commit --quiet --no-verify -m "task $i"
  head=$(g -C "$wt" rev-parse HEAD)
  g -C "$wt" push --quiet --no-verify "--force-with-lease=refs/heads/$branch" origin "$head:refs/heads/$branch"

  ci=$work/ci-$i
  g -C "$cache" worktree add --quiet --detach "$ci" "$head"
  (cd "$ci" && sh -c "test -f $file")
  g -C "$cache" worktree remove --force "$ci"

  g -C "$cache" fetch --quiet --prune origin
  merge=$work/merge-$i
  g -C "$cache" worktree add --quiet --detach "$merge" origin/main
  g -C "$merge" merge --squash --quiet "$head" >/dev/null
  g -C "$merge" commit --quiet --no-verify -m "Task $i (#$i)"
  g -C "$merge" push --quiet --no-verify origin HEAD:refs/heads/main
  g -C "$cache" worktree remove --force "$merge"
done
end=$EPOCHREALTIME

merged=$(g -C "$remote" rev-list --count main)
if [[ $merged -ne $((n + 1)) ]]; then
  echo "expected $((n + 1)) commits on main, found $merged" >&2
  exit 1
fi
awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
