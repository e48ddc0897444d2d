"""How much of the test texts' vocabulary each transfer text set covers: a diagnostic for why real unlabeled texts
teach the student more than synthetic ones.

For each set of texts, the share of the test split's word tokens (lowercased letters and apostrophes) whose word
occurs in the set at all, and at least 5 times. Prints a markdown table.

    python benchmarks/student/coverage.py runs/demo27 runs/demo27-t08
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def texts(path: Path, limit: int | None = None) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:limit]


def main():
    runs = [Path(p) for p in sys.argv[1:]]
    base = runs[0]
    test = Counter(w for t in texts(base / "data" / "test.jsonl") for w in words(t))
    total = sum(test.values())
    sets = [("the 200 labeled texts", texts(base / "data" / "train.jsonl"))]
    sets += [(f"{run.name}'s synthetic texts", texts(run / "synthesize" / "synthetic.jsonl")) for run in runs]
    synthetic = len(sets[-1][1])
    sets.append((f"{synthetic:,} real unlabeled texts", texts(base / "data" / "unlabeled.jsonl", synthetic)))
    print("| texts | distinct words | test word tokens covered | covered by a word seen ≥ 5 times |")
    print("|---|---|---|---|")
    for name, rows in sets:
        seen = Counter(w for t in rows for w in words(t))
        covered = sum(c for w, c in test.items() if w in seen) / total
        often = sum(c for w, c in test.items() if seen[w] >= 5) / total
        print(f"| {name} | {len(seen):,} | {covered:.1%} | {often:.1%} |")


if __name__ == "__main__":
    main()
