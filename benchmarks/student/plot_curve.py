"""The synthetic-count curve of benchmarks/student/RESULTS.md as a plot: bundle accuracy (mean ± std over 3 student
seeds) against the number of synthetic transfer texts, beside the same student on the split's real unlabeled texts,
the teacher and TF-IDF+SVM on the same test split.

    python benchmarks/student/plot_curve.py benchmarks/student/results-curve.json benchmarks/student/results-transfer.json \\
        runs/demo-new/report.json benchmarks/student/curve.png
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

curve, transfer, report, out = sys.argv[1:5]
points = sorted((int(re.search(r"count=(\d+)", spec).group(1)), entry) for spec, entry in json.load(open(curve))["variants"].items())
real = json.load(open(transfer))["variants"]["kim-cnn:teacher:unlabeled"]
report = json.load(open(report))
fig, ax = plt.subplots(figsize=(6.4, 4))
ax.errorbar([c for c, _ in points], [100 * e["bundle_accuracy"] for _, e in points], [100 * e["bundle_accuracy_std"] for _, e in points],
            marker="o", capsize=3, label="Kim-CNN student, synthetic transfer text")
ax.errorbar([10352], [100 * real["bundle_accuracy"]], [100 * real["bundle_accuracy_std"]], marker="s", capsize=3, color="C2",
            label="same student, 10,352 real unlabeled texts")
ax.axhline(100 * report["teacher"]["test_accuracy"], color="C3", ls="--", label="teacher (all-mpnet-base-v2, fine-tuned)")
ax.axhline(100 * report["tfidf_svm"]["test_accuracy"], color="C7", ls=":", label="TF-IDF + SVM")
ax.set_xscale("log")
ax.set_xlabel("transfer texts")
ax.set_ylabel("test accuracy of the int8 bundle, %")
ax.set_title("Rotten Tomatoes, 200 labels: the demo run, 3 student seeds", fontsize=10)
ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.01, 0.5))
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=120)
