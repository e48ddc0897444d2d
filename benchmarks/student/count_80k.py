"""The synthetic-count curve on the benchmark's three 80,000-text pools, as a table and a plot.

`benchmarks/student/count-80k/seed{0,1,2}.json` are made by ablate.py on each seed's run directory of the
80,000-text benchmark under every default of today (one student seed, 0, per pool; the first N texts of a pool are
the ones `--synthetic N` samples, as each shard's seed depends only on its index). This prints, per pool size, the
int8 bundle's test accuracy per seed, its mean ± std and the paired differences, and plots them beside that
benchmark's SetFit row and 90% of its teachers.

    python benchmarks/student/count_80k.py benchmarks/student/count-80k benchmarks/rotten-tomatoes-80k-defaults/results.json
"""

import json
import re
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

folder, benchmark = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
per_seed = benchmark["datasets"]["rotten-tomatoes"]["per_seed"]
curve = {}  # count -> {seed: (bundle accuracy, test agreement with the teacher, train seconds)}
for path in sorted(folder.glob("seed*.json")):
    seed = path.stem.removeprefix("seed")
    for spec, entry in json.loads(path.read_text())["variants"].items():
        count = int(m.group(1)) if (m := re.search(r"count=(\d+)", spec)) else per_seed[seed]["synthetic"]["kept"]  # all of the pool
        s = entry["per_seed"]["0"]
        accuracy = s["int8_accuracy"] if s.get("int8_accuracy") is not None else s["accuracy"]
        curve.setdefault(count, {})[seed] = (100 * accuracy, 100 * s["test_agreement"], s["train_seconds"])
seeds = sorted({seed for points in curve.values() for seed in points})
teacher = {seed: 100 * per_seed[seed]["rows"]["teacher"]["accuracy"] for seed in seeds}
setfit = {seed: 100 * per_seed[seed]["rows"]["setfit"]["accuracy"] for seed in seeds}


def spread(values):
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


print("| synthetic texts | bundle accuracy | per seed | % of the teacher | test agreement with the teacher | training seconds |")
print("|---|---|---|---|---|---|")
for count in sorted(curve):
    points = curve[count]
    accuracies = [points[s][0] for s in seeds if s in points]
    print(f"| {count:,} | {spread(accuracies)} | {' / '.join(f'{points[s][0]:.2f}' if s in points else '-' for s in seeds)} "
          f"| {statistics.fmean(points[s][0] / teacher[s] * 100 for s in points):.1f} "
          f"| {' / '.join(f'{points[s][1]:.1f}' for s in seeds if s in points)} "
          f"| {' / '.join(f'{points[s][2]:.0f}' for s in seeds if s in points)} |")
counts = sorted(curve)
for low, high in zip(counts, counts[1:]):
    pairs = [curve[high][s][0] - curve[low][s][0] for s in seeds if s in curve[low] and s in curve[high]]
    if pairs:
        print(f"{high:,} minus {low:,}: {' / '.join(f'{d:+.2f}' for d in pairs)} (mean {statistics.fmean(pairs):+.2f}, higher on {sum(d > 0 for d in pairs)} of {len(pairs)})")

fig, ax = plt.subplots(figsize=(6.4, 4))
for i, seed in enumerate(seeds):
    xs = [c for c in counts if seed in curve[c]]
    ax.plot(xs, [curve[c][seed][0] for c in xs], marker="os^"[i % 3], color=f"C{i}", label=f"split {seed}: student")
    ax.axhline(0.9 * teacher[seed], color=f"C{i}", ls="--", lw=0.8)
    ax.axhline(setfit[seed], color=f"C{i}", ls=":", lw=0.8)
ax.set_xscale("log")
ax.minorticks_off()
ax.set_xticks(counts, [f"{c:,}" for c in counts])
ax.set_xlabel("synthetic texts the student learns from (the first N of the pool)")
ax.set_ylabel("int8 bundle test accuracy (%)")
ax.set_title("bigru student, rotten-tomatoes benchmark splits\n(dashed: 90% of that split's teacher; dotted: its SetFit)", fontsize=10)
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
fig.savefig(folder / "curve.png", dpi=120)
print(folder / "curve.png")
