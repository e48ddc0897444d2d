"""How much of the test texts' vocabulary each transfer text set covers: a diagnostic for why real unlabeled texts
teach the student more than synthetic ones.

For each set of texts, the share of the test split's word tokens (lowercased letters and apostrophes) whose word
occurs in the set at all, and at least 5 times. Prints a markdown table.

    python benchmarks/student/coverage.py runs/demo27 runs/demo27-t08
"""

import re
import sys
from collections import Counter
from pathlib import Path

from gendistill.compressor.rundir import load_split
from gendistill.compressor.synthesize import load_synthetic


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def main():
    runs = [Path(p) for p in sys.argv[1:]]
    base = runs[0]
    test = Counter(w for t in load_split(base, "test")[0] for w in words(t))
    total = sum(test.values())
    sets = [("the 200 labeled texts", load_split(base, "train")[0])]
    sets += [(f"{run.name}'s synthetic texts", load_synthetic(run)) for run in runs]
    synthetic = len(sets[-1][1])
    sets.append((f"{synthetic:,} real unlabeled texts", load_split(base, "unlabeled")[0][:synthetic]))
    print("| texts | distinct words | test word tokens covered | covered by a word seen ≥ 5 times |")
    print("|---|---|---|---|")
    for name, rows in sets:
        seen = Counter(w for t in rows for w in words(t))
        covered = sum(c for w, c in test.items() if w in seen) / total
        often = sum(c for w, c in test.items() if seen[w] >= 5) / total
        print(f"| {name} | {len(seen):,} | {covered:.1%} | {often:.1%} |")


if __name__ == "__main__":
    main()
