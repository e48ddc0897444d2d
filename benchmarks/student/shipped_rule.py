"""Which student should `compress` ship? The rules side by side on pairs of students trained on one run.

    python benchmarks/student/shipped_rule.py OUT.json RUN_DIR:DISTILLED_GLOB:LABELED_ONLY_GLOB [...]

Each glob (relative to RUN_DIR) matches folders holding a `student/` and its `bundle/` (ablate.py's seedN folders,
the benchmark's student-* rows): a generation-distillation student's and a labeled-only student's. Students are paired
seed with seed when both globs match seedN folders, else every distilled student with every labeled-only one. For each
pair the dev texts are scored as the distill stage scores them (`distill.dev_right`, `distill.dev_disagreement`), the
test texts by the bundles, and each rule picks a student from the dev texts alone:
- margin m:        the labeled-only student when, of the dev texts only one of the two gets right, it gets at least
                   m more (margin 1: higher dev accuracy, the rule until 2026-12-05);
- sign test p<a:   the same, when so uneven a split would come less often than a from two equally good students
                   (exact one-sided binomial test);
and the report gives each rule's mean test accuracy of the shipped students, how often it swapped in the labeled-only
student, and the test points won or lost by swapping. `oracle` picks by test accuracy (the most any rule can reach).
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from gendistill.compressor.distill import dev_disagreement, dev_right
from gendistill.compressor.rundir import load_split
from gendistill.export.verify import accuracy, loss_p_value
from gendistill.runtime import Classifier

MARGINS = (1, 2, 3, 5)
LEVELS = (0.05, 0.1, 0.2)


def test_accuracy(bundle: Path, run_dir: str) -> float:
    texts, labels = load_split(run_dir, "test")
    return accuracy(np.asarray(Classifier.load(bundle, threads=1).predict_proba(texts)), np.asarray(labels))


def pairs(distilled: list[Path], labeled: list[Path]) -> list[tuple[Path, Path]]:
    seeds = {folder.name: folder for folder in labeled}
    if all(folder.name.startswith("seed") for folder in distilled + labeled) and all(folder.name in seeds for folder in distilled):
        return [(folder, seeds[folder.name]) for folder in distilled]
    return [(d, l) for d in distilled for l in labeled]


def main():
    out, *specs = sys.argv[1:]
    results = {"method": __doc__.split("\n\n", 2)[2].strip(), "pairs": []}
    for spec in specs:
        run_dir, distilled_glob, labeled_glob = spec.split(":")
        for distilled, labeled in pairs(sorted(Path(run_dir).glob(distilled_glob)), sorted(Path(run_dir).glob(labeled_glob))):
            d_dev, l_dev = dev_right(distilled / "student", run_dir), dev_right(labeled / "student", run_dir)
            pair = {"run_dir": run_dir, "distilled": str(distilled), "labeled_only": str(labeled), "dev_texts": len(d_dev),
                    **dev_disagreement(d_dev, l_dev), "dev_accuracy": [float(d_dev.mean()), float(l_dev.mean())],
                    "test_accuracy": [test_accuracy(distilled / "bundle", run_dir), test_accuracy(labeled / "bundle", run_dir)]}
            pair["p_value"] = loss_p_value(pair["only_labeled_only_right"], pair["only_distilled_right"])  # the exact one-sided sign test
            results["pairs"].append(pair)
            print(f"{distilled} vs {labeled}: dev {pair['dev_accuracy']}, only one right {pair['only_distilled_right']} / "
                  f"{pair['only_labeled_only_right']} (p {pair['p_value']:.3f}), test {pair['test_accuracy']}", file=sys.stderr)
    rules = {f"margin {m}": (lambda p, m=m: p["only_labeled_only_right"] - p["only_distilled_right"] >= m) for m in MARGINS}
    rules |= {f"sign test p<{a}": (lambda p, a=a: p["p_value"] < a) for a in LEVELS}
    rules |= {"oracle": lambda p: p["test_accuracy"][1] > p["test_accuracy"][0],
              "always distilled": lambda p: False}
    results["rules"] = {}
    for name, swaps in rules.items():
        picks = [bool(swaps(p)) for p in results["pairs"]]
        shipped = [p["test_accuracy"][pick] for p, pick in zip(results["pairs"], picks)]
        gains = [p["test_accuracy"][1] - p["test_accuracy"][0] for p, pick in zip(results["pairs"], picks) if pick]
        results["rules"][name] = {"mean_test_accuracy": statistics.fmean(shipped), "swaps": sum(picks),
                                  "swaps_that_lost": sum(g < 0 for g in gains), "test_points_from_swaps": 100 * sum(gains)}
        print(f"{name:22s} {100 * statistics.fmean(shipped):.2f}  swaps {sum(picks)}  lost {sum(g < 0 for g in gains)}  "
              f"points {100 * sum(gains):+.2f}", file=sys.stderr)
    Path(out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
