"""One shape's benchmark under both teacher priors, side by side: `--teacher-prior train` (the even labeled sample's
class shares) against `pool` (the training pool's), every row, per seed; the majority-class baseline from the seeds'
test splits when their runs dirs are here.

    python benchmarks/shapes/compare_priors.py rt-uneven [--runs runs/benchmark-shapes/prior-train]
"""

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{mean:.1f}{spread} ({' / '.join(f'{100 * v:.1f}' for v in values)})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("shape")
    parser.add_argument("--runs", type=Path, default=Path("runs/benchmark-shapes/prior-train"))
    args = parser.parse_args()
    results = {prior: json.loads((HERE / f"{args.shape}-prior-{prior}" / "results.json").read_text())["datasets"][args.shape]
               for prior in ("train", "pool")}
    seeds = sorted(set(results["train"]["per_seed"]) & set(results["pool"]["per_seed"]), key=int)
    print(f"{args.shape}: seeds {', '.join(seeds)} (both priors); test accuracy % (macro-F1 %), mean ± std (per seed)\n")
    print("| row | prior as sampled (train) | macro-F1 | pool prior | macro-F1 |")
    print("|---|---|---|---|---|")
    for name in results["train"]["per_seed"][seeds[0]]["rows"]:
        columns = []
        for prior in ("train", "pool"):
            rows = [results[prior]["per_seed"][s]["rows"].get(name) for s in seeds]
            rows = [r for r in rows if r]
            accuracy = [r["int8_accuracy"] if r.get("int8_accuracy") is not None else r["accuracy"] for r in rows]
            columns += [cell(accuracy), cell([r["macro_f1"] for r in rows])]
        print(f"| {name} | {' | '.join(columns)} |")
    majority = []
    for seed in seeds:
        test = args.runs / args.shape / f"seed{seed}" / "data" / "test.jsonl"
        if test.is_file():
            labels = [json.loads(line)["label"] for line in test.read_text().splitlines() if line.strip()]
            majority.append(max(labels.count(label) for label in set(labels)) / len(labels))
    if majority:
        print(f"| always the most frequent test class | {cell(majority)} | | same splits | |")
    print("\nStudents as their shipped bundles (int8 when they passed their checks).")


if __name__ == "__main__":
    main()
