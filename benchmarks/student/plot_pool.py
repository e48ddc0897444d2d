"""The pool-size section of benchmarks/student/RESULTS.md as a plot: bundle accuracy (mean ± std over 3 student
seeds) against the number of synthetic texts the student learns from (the surest of each pool), one marker per
pool size, beside the demo run's teacher and TF-IDF+SVM on the same test split.

    python benchmarks/student/plot_pool.py runs/demo27-80k/report.json benchmarks/student/pool.png \\
        20000=benchmarks/student/results-pool-80k-p20.json 40000=benchmarks/student/results-pool-80k-p40.json \\
        80000=benchmarks/student/results-pool-80k.json
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

report, out, *pools = sys.argv[1:]
report = json.load(open(report))
fig, ax = plt.subplots(figsize=(6.4, 4))
for i, pool in enumerate(pools):
    size, path = pool.split("=")
    points = sorted((int(re.search(r"keep_confident=(\d+)", spec).group(1)), entry)
                    for spec, entry in json.load(open(path))["variants"].items())
    ax.errorbar([k for k, _ in points], [100 * e["bundle_accuracy"] for _, e in points], [100 * e["bundle_accuracy_std"] for _, e in points],
                marker="os^"[i % 3], capsize=3, color=f"C{i}", label=f"surest of {int(size):,} sampled")
ax.axhline(100 * report["teacher"]["test_accuracy"], color="C3", ls="--", label="teacher (all-mpnet-base-v2, fine-tuned)")
ax.axhline(100 * report["tfidf_svm"]["test_accuracy"], color="C7", ls=":", label="TF-IDF + SVM")
ax.set_xlabel("synthetic texts the student learns from")
ax.set_ylabel("int8 bundle test accuracy (%)")
ax.set_title("Kim-CNN student on rotten-tomatoes (demo split), 3 student seeds")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
fig.savefig(out, dpi=120)
print(out)
