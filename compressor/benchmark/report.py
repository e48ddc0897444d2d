"""results.json's schema, and what is rendered from it alone: RESULTS.md and the plots.

`python -m gendistill.compressor.benchmark.report OUT` (or `gendistill benchmark --report-only --out OUT`)
re-renders RESULTS.md and the plots from OUT/results.json, without re-running anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gendistill.runtime.bundle import write_atomic, write_json_atomic, write_text_atomic
from gendistill.runtime.formatting import ms, pct, size

MODELS = ("tfidf-svm", "fasttext", "encoder-lr", "model2vec-lr", "setfit", "teacher", "student-labeled-only", "student-kd", "student-gendist",
          "student-shipped", "student-gendist-hard", "student-oracle-unlabeled")
ROW_KEYS = ("model", "accuracy_mean", "accuracy_std", "macro_f1_mean", "params", "bytes", "latency_ms")
OPTIONAL_ROWS = ("encoder-lr", "model2vec-lr", "setfit", "student-shipped")
"""Rows a results file may lack: added after results were committed (student-shipped re-reads the two students from
the runs directory; seeds recorded before it, or whose runs directory is gone, have none), or trained only when asked
for (model2vec-lr needs model2vec's own environment; setfit an encoder and the time)."""

def check_results(results: dict) -> None:
    """Raise ValueError unless `results` has the documented shape (the schema tests and consumers rely on)."""
    if not isinstance(results.get("datasets"), dict) or not results["datasets"]:
        raise ValueError("results.datasets must be a non-empty object")
    for name, dataset in results["datasets"].items():
        if not isinstance(dataset.get("seeds"), list) or not dataset["seeds"]:
            raise ValueError(f"{name}: seeds must be a non-empty list")
        if not isinstance(dataset.get("per_class"), int):
            raise ValueError(f"{name}: per_class must be an integer")
        models = [row.get("model") for row in dataset.get("rows", [])]
        if len(set(models)) != len(models) or not set(MODELS) - set(OPTIONAL_ROWS) <= set(models) <= set(MODELS):
            raise ValueError(f"{name}: rows must be {MODELS} (any of {OPTIONAL_ROWS} may be missing), got {models}")
        for row in dataset["rows"]:
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise ValueError(f"{name}/{row['model']}: missing {missing}")
            for key in ("accuracy_mean", "macro_f1_mean"):
                if not isinstance(row[key], float) or not 0.0 <= row[key] <= 1.0:
                    raise ValueError(f"{name}/{row['model']}: {key} must be a fraction, got {row[key]!r}")
            if not isinstance(row["accuracy_std"], float) or row["accuracy_std"] < 0:
                raise ValueError(f"{name}/{row['model']}: accuracy_std must be a non-negative number")
            if not isinstance(row["params"], int) or row["params"] <= 0:
                raise ValueError(f"{name}/{row['model']}: params must be a positive integer")
            for key in ("bytes", "latency_ms"):
                if row[key] is not None and not (isinstance(row[key], (int, float)) and row[key] > 0):
                    raise ValueError(f"{name}/{row['model']}: {key} must be positive or null")


def render_from(out_dir: str | Path) -> None:
    """Re-render RESULTS.md and the plots from `out_dir/results.json` alone."""
    import json

    from gendistill.runtime.errors import GendistillError

    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise GendistillError(f"{path} does not exist; run `gendistill benchmark --out {out_dir}` first.")
    write_outputs(json.loads(path.read_text(encoding="utf-8")), Path(out_dir))


def write_outputs(results: dict, out_dir: Path) -> None:
    check_results(results)
    write_json_atomic(out_dir / "results.json", results)
    plots = write_plots(results, out_dir)
    markdown = render_markdown(results, plots)
    write_text_atomic(out_dir / "RESULTS.md", markdown)


def write_plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, dataset in results["datasets"].items():
        rows = {r["model"]: r for r in dataset["rows"]}
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for transfer, label, color in (("synthetic", "generation-distillation (synthetic texts)", "tab:blue"),
                                       ("unlabeled", "oracle (real unlabeled texts)", "tab:green")):
            points = [p for p in dataset["synthetic_curve"] if p["transfer"] == transfer]
            if points:
                ax.errorbar([p["count"] for p in points], [p["accuracy_mean"] for p in points],
                            yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=label, color=color)
        for model, style in (("teacher", "k--"), ("tfidf-svm", "r:"), ("fasttext", "m-."), ("student-labeled-only", "c:")):
            ax.axhline(rows[model]["accuracy_mean"], linestyle=style[1:], color=style[0], linewidth=1, label=model)
        ax.set_xlabel("transfer texts (0 = plain KD on the labeled data)")
        ax.set_ylabel("test accuracy")
        seeds = len(dataset["seeds"])
        ax.set_title(f"{name}: student accuracy vs transfer texts\n({dataset['per_class']}/class, {seeds} seed{'s' if seeds > 1 else ''}"
                     f"{', error bars: std over seeds' if seeds > 1 else ''})", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        written.append(_save(fig, ax, out_dir / f"{name}-synthetic-curve.png"))

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, row in enumerate(dataset["rows"]):
            if row["latency_ms"] is None:
                continue
            n_bytes = max(row["bytes"] or 1, 1)
            ax.scatter(row["latency_ms"], row["accuracy_mean"], s=20 + 40 * max(np.log10(n_bytes) - 3, 0), alpha=0.6,
                       marker="os^Dv<>p"[i % 8], label=f"{row['model']} ({size(n_bytes)})")
        # A legend, not labels by the points: the students sit on top of each other.
        ax.legend(fontsize=6, loc="best", markerscale=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("batch-1 latency, ms (1 CPU thread, log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{name}: accuracy vs batch-1 latency\n(marker area grows with log size on disk)", fontsize=10)
        written.append(_save(fig, ax, out_dir / f"{name}-accuracy-latency.png"))
    return written


def _save(fig, ax, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110), binary=True)
    plt.close(fig)
    return path.name


def _standard_error(accuracy: float, n) -> float:
    return float(np.sqrt(accuracy * (1 - accuracy) / max(int(n or 1), 1)))


def headline(dataset: dict) -> dict:
    """The papers' comparisons for one dataset, in accuracy points and ratios."""
    rows = {r["model"]: r for r in dataset["rows"]}
    student = rows["student-gendist"]["accuracy_mean"]
    return {
        "student_vs_teacher": student / max(rows["teacher"]["accuracy_mean"], 1e-9),
        "minus_tfidf_svm": student - rows["tfidf-svm"]["accuracy_mean"],
        "minus_fasttext": student - rows["fasttext"]["accuracy_mean"],
        "minus_encoder_lr": student - rows["encoder-lr"]["accuracy_mean"] if "encoder-lr" in rows else None,
        "minus_model2vec_lr": student - rows["model2vec-lr"]["accuracy_mean"] if "model2vec-lr" in rows else None,
        "minus_setfit": student - rows["setfit"]["accuracy_mean"] if "setfit" in rows else None,
        "minus_labeled_only": student - rows["student-labeled-only"]["accuracy_mean"],
        "minus_kd": student - rows["student-kd"]["accuracy_mean"],
        "soft_minus_hard": student - rows["student-gendist-hard"]["accuracy_mean"],
        "oracle_minus_synthetic": rows["student-oracle-unlabeled"]["accuracy_mean"] - student,
        "teacher_minus_student": rows["teacher"]["accuracy_mean"] - student,
    }


def render_markdown(results: dict, plots: list[str]) -> str:
    lines = ["# Benchmark results", ""]
    if results.get("command"):
        lines += ["Made by:", "", "```", results["command"], "```", ""]
    env = results.get("environment", {})
    compute = sum(s.get("compute_seconds", 0) for d in results["datasets"].values() for s in d.get("per_seed", {}).values())
    lines += [f"Machine: {env.get('cpu_count')} CPU cores ({env.get('machine')}), torch {env.get('torch')}, {env.get('date')}; "
              f"compute {compute / 60:.0f} min in all (this invocation {results.get('wall_seconds', 0) / 60:.0f} min; "
              "the rest reused from the runs dir, or from seeds this file recorded before). Accuracy and macro-F1 in % on the test split, "
              "mean ± sample std over seeds (each seed: its own split, teacher, generator, synthetic texts and students). "
              "Latency: median batch-1 wall time per text, raw string in, 1 CPU thread, each model in its own runtime "
              "(students: int8 ONNX via runtime.Classifier). Size: files needed to predict.", ""]
    if results.get("skipped_for_time_budget"):
        skipped = ", ".join(f"{s['dataset']} seed {s['seed']}" for s in results["skipped_for_time_budget"])
        lines += [f"Not run, to stay within the time budget of {results['benchmark_settings'].get('time_budget_minutes')} min: {skipped}.", ""]
    for name, dataset in results["datasets"].items():
        h = headline(dataset)
        splits = dataset["splits"]
        several = len(dataset["seeds"]) > 1  # one seed has no spread to show
        rows_by_model = {r["model"]: r for r in dataset["rows"]}

        def sd(std):
            return std if several else None

        lines += [f"## {name}", "",
                  f"{dataset['per_class']} labeled examples per class (train {splits.get('train')}), dev {splits.get('dev')}, "
                  f"test {splits.get('test')}; seeds {', '.join(map(str, dataset['seeds']))}"
                  + ("." if several else f" (one seed, so no spread over seeds; the test set alone gives a standard error of about "
                                         f"{100 * _standard_error(rows_by_model['student-gendist']['accuracy_mean'], splits.get('test')):.1f} "
                                         "points on the student's accuracy)."), "",
                  "| model | accuracy | macro-F1 | params | size | latency ms |", "|---|---|---|---|---|---|"]
        for row in dataset["rows"]:
            latency = ms(row["latency_ms"], unit=False) + (" (fp32 export)" if "fp32" in row.get("precision", "") else "")
            lines.append(f"| {row['model']} | {pct(row['accuracy_mean'], sd(row['accuracy_std']), sign=False)} | {pct(row['macro_f1_mean'], sign=False)} | "
                         f"{row['params']:,} | {size(row['bytes'])} | {latency} |")
        if "student-shipped" in rows_by_model:
            shipped = rows_by_model["student-shipped"]["shipped_per_seed"]
            from gendistill.compressor.distill import SHIP_MARGIN

            per_seed = ", ".join(f"{seed}: {row}" for seed, row in zip(dataset["seeds"], shipped))
            lines += ["", "student-shipped is what `compress` ships: the labeled-only student where, of the dev texts only one of "
                      f"the two students gets right, it gets at least {SHIP_MARGIN} more; else the generation-distillation one. "
                      f"Per seed: {per_seed}."]
        int8 = {r["model"]: r.get("int8_accuracy") for r in dataset["rows"] if r.get("int8_accuracy") is not None}
        if int8:
            lines += ["", "Student accuracy after int8 export: " + ", ".join(f"{m} {pct(a, sign=False)}" for m, a in int8.items()) + "."]
        def points(x):
            return f"{100 * x:+.1f}"

        lines += ["", f"The generation-distillation student keeps **{100 * h['student_vs_teacher']:.1f}%** of the teacher's accuracy "
                  f"({100 * h['teacher_minus_student']:.1f} points below it). Student-gendist minus: TF-IDF+SVM {points(h['minus_tfidf_svm'])}, "
                  f"fastText {points(h['minus_fasttext'])}, "
                  + (f"the teacher's encoder frozen + logistic regression (encoder-lr) {points(h['minus_encoder_lr'])}, "
                     if h["minus_encoder_lr"] is not None else "")
                  + (f"model2vec distilled from that encoder + logistic regression (model2vec-lr) {points(h['minus_model2vec_lr'])}, "
                     if h["minus_model2vec_lr"] is not None else "")
                  + (f"SetFit (setfit) {points(h['minus_setfit'])}, " if h["minus_setfit"] is not None else "")
                  + f"labeled-only student {points(h['minus_labeled_only'])}, "
                  f"plain KD {points(h['minus_kd'])}, hard labels {points(h['soft_minus_hard'])}, "
                  f"oracle on real unlabeled texts {points(-h['oracle_minus_synthetic'])} (points of accuracy).", ""]
        lines += ["### Accuracy vs number of transfer texts (paper's Figure 2)", "", "| texts | synthetic | real unlabeled (oracle) |", "|---|---|---|"]
        by_count: dict[int, dict] = {}
        for point in dataset["synthetic_curve"]:
            by_count.setdefault(point["count"], {})[point["transfer"]] = point
        for count, points in sorted(by_count.items()):
            cells = [pct(points[t]["accuracy_mean"], sd(points[t]["accuracy_std"]), sign=False) if t in points else "-" for t in ("synthetic", "unlabeled")]
            lines.append(f"| {count} | {cells[0]} | {cells[1]} |")
        if dataset["ablations"]:
            lines += ["", "### Ablations (generation-distillation student, one setting changed)", "",
                      "| ablation | value | accuracy | macro-F1 | params | latency ms |", "|---|---|---|---|---|---|"]
            for a in dataset["ablations"]:
                value = f"{a['value']} (default)" if a["default"] else str(a["value"])
                lines.append(f"| {a['ablation']} | {value} | {pct(a['accuracy_mean'], sd(a['accuracy_std']), sign=False)} | {pct(a['macro_f1_mean'], sign=False)} | "
                             f"{a['params']:,} | {ms(a['latency_ms'], unit=False)} |")
        per_seed = dataset["per_seed"]
        # compute_seconds: what the seed cost when it was made, even if this invocation read it from the cache
        seconds = [s.get("compute_seconds", s.get("wall_seconds", 0)) for s in per_seed.values()]
        first = next(iter(per_seed.values()))
        gen = first.get("generator") or {}
        teacher_dev = ", ".join(f"{100 * s['teacher_dev_accuracy']:.1f}" for s in per_seed.values())
        confidence = ", ".join(f"{s['synthetic_mean_max_probability']:.2f}" for s in per_seed.values()
                               if s.get("synthetic_mean_max_probability") is not None)
        perplexity = (f"Generator dev perplexity (seed {dataset['seeds'][0]}): {gen.get('dev_perplexity_before', 0):.0f} -> "
                      f"{gen.get('dev_perplexity_after', 0):.0f}. ") if gen else ""
        lines += ["", f"Seconds per seed (shared stages + every row): {', '.join(f'{s:.0f}' for s in seconds)}. "
                  f"Teacher dev accuracy per seed: {teacher_dev}. {perplexity}"
                  f"Teacher mean max-probability on synthetic texts per seed: {confidence}.", ""]
        for plot in plots:
            if plot.startswith(f"{name}-"):
                lines.append(f"![{plot}]({plot})")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    render_from(sys.argv[1] if len(sys.argv) > 1 else "benchmarks")
