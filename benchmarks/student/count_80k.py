"""The synthetic-count curve on the benchmark's three 80,000-text pools, as a table and a plot.

`benchmarks/student/count-80k/seed{0,1,2}.json` are made by ablate.py on each seed's run directory of the
80,000-text benchmark under every default of today (one student seed, 0, per pool; the first N texts of a pool are
the ones `--synthetic N` samples, as each shard's seed depends only on its index). This prints, per pool size, the
int8 bundle's test accuracy per seed, its mean ± std and the paired differences, and plots them beside that
benchmark's SetFit row and 90% of its teachers.

    python benchmarks/student/count_80k.py benchmarks/student/count-80k benchmarks/rotten-tomatoes-80k-defaults/results.json \
        [benchmarks/student/count-160k]

The optional third folder holds the next doubling (join_pools.py's two pools joined, against the first 80,000 alone,
both trained in one ablate.py run): its pairs are printed apart and drawn as their own segments, since its 80,000-text
students were trained by a later commit than the curve's (e850564 changed about one text's ids in 10,000).
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
doubling_folder = Path(sys.argv[3]) if len(sys.argv) > 3 else None
per_seed = benchmark["datasets"]["rotten-tomatoes"]["per_seed"]


def read_curve(folder):
    """count -> {seed: (bundle accuracy, test agreement with the teacher, train seconds)} from one student seed a pool."""
    curve = {}
    for path in sorted(folder.glob("seed*.json")):
        seed = path.stem.removeprefix("seed")
        for spec, entry in json.loads(path.read_text())["variants"].items():
            s = entry["per_seed"]["0"]
            # "count=N" is the first N of the pool; without it the student read all of it (labeled texts besides)
            count = int(m.group(1)) if (m := re.search(r"count=(\d+)", spec)) else s["training_texts"] - per_seed[seed]["splits"]["train"]
            accuracy = s["int8_accuracy"] if s.get("int8_accuracy") is not None else s["accuracy"]
            curve.setdefault(count, {})[seed] = (100 * accuracy, 100 * s["test_agreement"], s["train_seconds"])
    return curve


curve = read_curve(folder)
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

doubling = {}  # seed -> [(count, bundle accuracy, test agreement)] for the 80,000 and the joined pool, trained side by side
if doubling_folder:
    for count, points in sorted(read_curve(doubling_folder).items()):
        for seed, (accuracy, agreement, _) in points.items():
            doubling.setdefault(seed, []).append((count, accuracy, agreement))
    doubling = {seed: points for seed, points in doubling.items() if len(points) == 2}  # a split half done waits
    print("\nThe next doubling (its own pairs, trained side by side):")
    print("| split | 80,000 | two pools joined | difference | test agreement | % of the teacher |")
    print("|---|---|---|---|---|---|")
    for seed, ((_, low, low_agree), (count, high, high_agree)) in sorted(doubling.items()):
        print(f"| {seed} | {low:.2f} | {high:.2f} ({count:,} texts) | {high - low:+.2f} | {low_agree:.2f} → {high_agree:.2f} "
              f"| {low / teacher[seed] * 100:.1f} → {high / teacher[seed] * 100:.1f} |")
    if len(doubling) > 1:
        differences = [points[1][1] - points[0][1] for points in doubling.values()]
        print(f"mean difference {statistics.fmean(differences):+.2f} ± {statistics.stdev(differences):.2f}, "
              f"higher on {sum(d > 0 for d in differences)} of {len(differences)}; joined pools "
              f"{spread([points[1][1] for points in doubling.values()])}, "
              f"{statistics.fmean(points[1][1] / teacher[seed] * 100 for seed, points in doubling.items()):.1f}% of the teacher")

fig, ax = plt.subplots(figsize=(8.4, 4))
for i, seed in enumerate(seeds):
    xs = [c for c in counts if seed in curve[c]]
    ax.plot(xs, [curve[c][seed][0] for c in xs], marker="os^"[i % 3], color=f"C{i}", label=f"split {seed}: student")
    ax.axhline(0.9 * teacher[seed], color=f"C{i}", ls="--", lw=0.8)
    ax.axhline(setfit[seed], color=f"C{i}", ls=":", lw=0.8)
    if seed in doubling:
        ax.plot([p[0] for p in doubling[seed]], [p[1] for p in doubling[seed]], marker="os^"[i % 3], mfc="none",
                color=f"C{i}", ls="-.", label=f"split {seed}: next doubling, retrained")
ax.set_xscale("log")
ax.minorticks_off()
ticks = sorted(set(counts) | {p[0] for points in doubling.values() for p in points[1:]})
ax.set_xticks(ticks, [f"{c / 1000:.0f}k" for c in ticks])
ax.set_xlabel("synthetic texts the student learns from (the first N of the pool)")
ax.set_ylabel("int8 bundle test accuracy (%)")
ax.set_title("bigru student, rotten-tomatoes benchmark splits\n(dashed: 90% of that split's teacher; dotted: its SetFit)", fontsize=10)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: inside, it hid points
fig.tight_layout()
fig.savefig(folder / "curve.png", dpi=120)
print(folder / "curve.png")
