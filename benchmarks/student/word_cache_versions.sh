#!/bin/bash
# word_cache.py under two versions of the runtime, side by side: commit REV and the working tree, in the order
# REV, tree, tree, REV (so a drift of the machine's speed weighs on both alike), merged into OUT.json.
#
#   bash benchmarks/student/word_cache_versions.sh REV OUT.json RUN_DIR:STUDENT_DIR [...]
#
# REV is checked out into a temporary git worktree whose gendistill/ links to its runtime/, export/, compressor/
# (the layout the editable install maps), and put first on PYTHONPATH so its processes import REV's code.
set -euo pipefail
rev=$1 out=$2; shift 2
root=$(git rev-parse --show-toplevel)
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach -q "$work/tree" "$rev"
for package in runtime export compressor mobile_demo; do ln -s "../$package" "$work/tree/gendistill/$package"; done
specs=()
for spec in "$@"; do  # absolute paths: REV's copy of the script runs from its worktree
  IFS=: read -r -a parts <<< "$spec"; absolute=()
  for part in "${parts[@]}"; do absolute+=("$(realpath "$part")"); done
  specs+=("$(IFS=:; echo "${absolute[*]}")")
done
for run in rev-1 tree-1 tree-2 rev-2; do
  if [[ $run == rev-* ]]; then
    (cd "$work/tree" && PYTHONPATH="$work/tree" OMP_NUM_THREADS=1 "$python" benchmarks/student/word_cache.py "$work/$run.json" "${specs[@]}")
  else
    (cd "$root" && OMP_NUM_THREADS=1 "$python" benchmarks/student/word_cache.py "$work/$run.json" "${specs[@]}")
  fi
done
"$python" - "$work" "$rev" "$out" <<'PY'
import json, statistics, subprocess, sys
from pathlib import Path
work, rev, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
runs = {run: json.loads((work / f"{run}.json").read_text()) for run in ("rev-1", "tree-1", "tree-2", "rev-2")}
commit = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True).stdout.strip()
summary = {}
for student in runs["rev-1"]["students"]:
    summary[student] = {version: {way: statistics.median(value for run in (f"{version}-1", f"{version}-2")
                                                         for value in runs[run]["students"][student]["ms"][way])
                                  for way in runs["rev-1"]["students"][student]["ms"]}
                        for version in ("rev", "tree")}
    print(student, {version: {way: round(ms, 3) for way, ms in ways.items()} for version, ways in summary[student].items()})
out.write_text(json.dumps({"rev": commit, "order": list(runs), "median_ms": summary, "runs": runs}, indent=1) + "\n")
PY
