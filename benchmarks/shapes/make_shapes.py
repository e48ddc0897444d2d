"""Task shapes the main benchmark does not cover, built from the embedded datasets as CSV files (text, label), so
`gendistill benchmark` can run on them like on any user's file. Deterministic (seeded); written to OUT_DIR:

- `bbc3.csv`: bbc-news, three topics (business, sport, tech), every article: few classes, long texts, even.
- `bbc3-uneven.csv`: the same three topics at 70 / 20 / 10% (sport all 511, business 146, tech 73): an even labeled
  sample (--per-class) then meets an uneven test set, the case `--teacher-prior pool` is for.
- `rt-uneven.csv`: rotten-tomatoes with rotten reviews cut to a quarter of fresh ones (80 / 20%): short texts, two classes.

    python benchmarks/shapes/make_shapes.py runs/shapes
"""

import csv
import random
import sys
from pathlib import Path

from gendistill.compressor.data import _embedded

SHAPES = {
    "bbc3": ("bbc-news", {"business": None, "sport": None, "tech": None}),
    "bbc3-uneven": ("bbc-news", {"sport": 511, "business": 146, "tech": 73}),
    "rt-uneven": ("rotten-tomatoes", {"fresh": None, "rotten": 1850}),
}
"""shape -> (embedded dataset, {label: articles kept (None = all)})."""


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (dataset, keep) in SHAPES.items():
        rows = [r for r in _embedded(dataset) if r["label"] in keep]
        random.Random(0).shuffle(rows)
        taken, chosen = {label: 0 for label in keep}, []
        for row in rows:
            if keep[row["label"]] is None or taken[row["label"]] < keep[row["label"]]:
                taken[row["label"]] += 1
                chosen.append(row)
        with open(out_dir / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((r["text"], r["label"]) for r in chosen)
        print(f"{out_dir / name}.csv: {', '.join(f'{label} {count}' for label, count in taken.items())}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
