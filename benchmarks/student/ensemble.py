"""Accuracy of students averaged: each variant's seeds of an ablate.py run, their bundles' log-probabilities averaged
over every pair, triple, ... of seeds (what an ensemble of independently trained students would reach).

    python benchmarks/student/ensemble.py RUN_DIR VARIANT_DIR [...] > OUT.json

VARIANT_DIR is a folder under RUN_DIR/student-ablation (e.g. bigru_teacher_synthetic) holding seed0, seed1, ...
"""

import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from gendistill.compressor.rundir import load_split
from gendistill.export.verify import accuracy
from gendistill.runtime import Classifier


def main():
    run_dir, *variants = sys.argv[1:]
    texts, labels = load_split(run_dir, "test")
    truth = np.asarray(labels)
    out = {"run_dir": run_dir, "test_texts": len(texts), "variants": {}}
    for variant in variants:
        bundles = sorted((Path(run_dir) / "student-ablation" / variant).glob("seed*/bundle"))
        log_probs = [np.log(np.asarray(Classifier.load(b, threads=1).predict_proba(texts)) + 1e-9) for b in bundles]

        def averaged_accuracy(members):
            return accuracy(np.mean([log_probs[i] for i in members], 0), truth)

        by_size = {}
        for size in range(1, len(bundles) + 1):
            scores = [averaged_accuracy(members) for members in itertools.combinations(range(len(bundles)), size)]
            by_size[size] = {"mean": statistics.fmean(scores), "min": min(scores), "max": max(scores), "combinations": len(scores)}
        out["variants"][variant] = {"seeds": [b.parent.name for b in bundles], "accuracy_by_ensemble_size": by_size}
        print(variant, {size: round(100 * v["mean"], 2) for size, v in by_size.items()}, file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
