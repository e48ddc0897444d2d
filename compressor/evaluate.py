"""Stage `evaluate` and the run report: teacher vs student vs the labeled-only student on the test split.

`report.json` and `report.md` are derived from the stages' own metrics files, so they are rewritten
after export too (adding the bundle's figures, and why it is fp32 when int8 was refused) without
re-running anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path


from gendistill.compressor.annotate import CONFIDENT, load_annotations, user_unlabeled
from gendistill.compressor.rundir import STAGES, begin_stage, finish_stage, is_complete, is_stale, load_labels, load_split, read_json, stage_path
from gendistill.compressor.training import accuracy, macro_f1, per_class_scores
from gendistill.runtime.bundle import write_atomic, write_json_atomic, write_text_atomic
from gendistill.runtime.formatting import ms, pct, size
from gendistill.runtime.settings import Settings


@dataclass
class EvaluateSettings(Settings):
    PREFIX = "evaluate_"

    batch_size: int = 256
    """Test texts the students read together."""

    def validate(self):
        self.at_least("batch_size", 1)


def _scores(predictions, targets, num_labels) -> dict:
    return {
        "test_accuracy": accuracy(predictions, targets),
        "test_macro_f1": macro_f1(predictions, targets, num_labels),
        "per_class": per_class_scores(predictions, targets, num_labels),
    }


def _dir_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def reliability(logits, targets, bins: int = 10) -> dict:
    """The teacher's calibration on the test texts: per confidence bin, mean confidence vs accuracy, and the
    expected calibration error (the count-weighted mean gap)."""
    import numpy as np

    from gendistill.runtime.classifier import softmax

    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == np.asarray(targets)
    edges = np.linspace(1 / probabilities.shape[1], 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = [{"confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean()), "count": int((which == b).sum())}
            for b in range(bins) if (which == b).any()]
    ece = sum(r["count"] * abs(r["confidence"] - r["accuracy"]) for r in rows) / max(len(confidence), 1)
    return {"bins": rows, "ece": float(ece), "mean_confidence": float(confidence.mean())}


def run_evaluate(settings: EvaluateSettings, run_dir: str | Path) -> dict:
    from gendistill.compressor.student import count_parameters, load_student, predict_logits, student_input

    started = time.time()
    labels = load_labels(run_dir)
    test_texts, test_y = load_split(run_dir, "test")
    out = begin_stage(run_dir, "evaluate")
    teacher_metrics = read_json(stage_path(run_dir, "teacher") / "metrics.json")
    teacher_dir = stage_path(run_dir, "teacher") / "model"
    teacher_test = load_annotations(run_dir, "test")
    results = {
        "teacher": {
            **_scores(teacher_test.argmax(1), test_y, len(labels)),
            "params": teacher_metrics["params"],
            "bytes": _dir_bytes(teacher_dir, "*.safetensors") or _dir_bytes(teacher_dir, "*.bin"),
            "reliability": reliability(teacher_test, test_y),
        }
    }
    for name, folder in (("student", "student"), ("student_labeled_only", "labeled_only")):
        student_dir = stage_path(run_dir, "distill") / folder
        if not (student_dir / "student.json").is_file():
            continue
        model, config = load_student(student_dir)
        predictions = predict_logits(model, student_input(student_dir, config), test_texts, settings.batch_size).argmax(1)
        results[name] = {
            **_scores(predictions, test_y, len(labels)),
            "params": count_parameters(model),
            "bytes": (student_dir / "student.safetensors").stat().st_size,
            "architecture": config.architecture,
        }
    # The simplest peer a user would try first, on the same split (C and n-grams tuned on dev).
    from gendistill.compressor.benchmark.peers import train_tfidf_svm

    work = out / "tfidf-svm"
    work.mkdir()
    train_texts, train_y = load_split(run_dir, "train")
    dev_texts, dev_y = load_split(run_dir, "dev")
    peer = train_tfidf_svm(train_texts, train_y, dev_texts, dev_y, test_texts, test_y, len(labels), work, test_texts[:50])
    results["tfidf_svm"] = {"test_accuracy": peer["accuracy"], "test_macro_f1": peer["macro_f1"], **{k: peer[k] for k in ("params", "bytes", "latency_ms")}}
    results["seconds"] = time.time() - started
    finish_stage(run_dir, "evaluate", asdict(settings), results)
    return results


def build_report(run_dir: str | Path) -> dict:
    """report.json's content from the finished stages' metrics."""
    run_dir = Path(run_dir)
    # A stage built on outputs re-made since is not reported (the bundle of an earlier student, kept by --no-export).
    metrics = {s: read_json(stage_path(run_dir, s) / "metrics.json") for s in STAGES if is_complete(run_dir, s) and not is_stale(run_dir, s)}
    data_settings = read_json(stage_path(run_dir, "data") / "settings.json")
    evaluation = metrics.get("evaluate", {})
    report = {
        "dataset": data_settings["source"],
        "labels": load_labels(run_dir),
        "splits": metrics["data"]["sizes"],
        "per_class": data_settings.get("per_class"),
    }
    if user_unlabeled(run_dir):  # --unlabeled FILE: real transfer texts beside the synthetic ones
        report["user_unlabeled"] = {"file": data_settings["unlabeled"], "texts": metrics["data"]["sizes"].get("unlabeled")}
    for name in ("teacher", "student", "student_labeled_only", "tfidf_svm"):
        if name in evaluation:
            report[name] = {k: evaluation[name][k] for k in ("test_accuracy", "test_macro_f1", "params", "bytes", "per_class", "reliability",
                                                             "latency_ms", "architecture") if k in evaluation[name]}
    if "teacher" in report and "teacher" in metrics:
        t = metrics["teacher"]
        report["teacher"].update({k: t[k] for k in ("recipe", "pooling", "temperature") if k in t})
    if "generator" in metrics:
        report["generator"] = {k: metrics["generator"][k] for k in ("dev_perplexity_before", "dev_perplexity_after", "params")}
    if "synthesize" in metrics:
        s = metrics["synthesize"]
        report["synthetic"] = {k: s.get(k) for k in ("requested", "kept", "sampled", "tokens_per_second", "nearest_training_similarity")}
        report["synthetic"]["distilled"] = metrics.get("distill", {}).get("synthetic_texts_distilled")
        a = metrics.get("annotate", {})
        report["synthetic"].update({k: a[k] for k in ("synthetic_mean_max_probability", "synthetic_label_counts", "synthetic_confidence_per_class",
                                                      "synthetic_confident_share", "test_confident_share") if k in a})
    if "annotate" in metrics:
        report["annotation"] = {k: metrics["annotate"].get(k) for k in ("engine", "texts", "texts_per_second", "seconds", "engine_check")}
    if "distill" in metrics and metrics["distill"].get("shipped"):
        d = metrics["distill"]
        report["shipped"] = {"student": d["shipped"], "dev_accuracy": d["dev_accuracy"], "labeled_only_dev_accuracy": d.get("labeled_only_dev_accuracy"),
                             "dev_disagreement": d.get("dev_disagreement")}
    test_y = load_split(run_dir, "test")[1]
    if test_y:
        report["majority_class_test_accuracy"] = _majority(test_y)[1]
    dev_y = load_split(run_dir, "dev")[1]
    if "distill" in metrics and dev_y:
        d = metrics["distill"]
        majority, majority_dev = _majority(dev_y)
        shipped_dev = d["labeled_only_dev_accuracy"] if d.get("shipped") == "labeled-only" else d["dev_accuracy"]
        if shipped_dev <= majority_dev:  # a student no better than a constant: say so loudly, never ship it quietly
            prior = read_json(stage_path(run_dir, "teacher") / "settings.json").get("prior", "train")
            report["warning"] = (
                f"The shipped student scores {pct(shipped_dev)} on dev, no better than always answering {report['labels'][majority]!r} "
                f"({pct(majority_dev)}): do not use this bundle as it is. "
                + ("With uneven classes, try --teacher-prior pool; otherwise give " if prior == "train" else "Give ")
                + "more labeled texts (--per-class) or real unlabeled ones (--unlabeled FILE).")
    if "teacher" in report and "student" in report:
        report["student_vs_teacher"] = report["student"]["test_accuracy"] / max(report["teacher"]["test_accuracy"], 1e-9)
        report["compression"] = report["teacher"]["params"] / max(report["student"]["params"], 1)
    if "export" in metrics:
        report["bundle"] = {"path": str(stage_path(run_dir, "export")), **{k: v for k, v in metrics["export"].items() if k not in ("seconds", "stage_id")}}
    seconds = {stage: m["seconds"] for stage, m in metrics.items() if "seconds" in m}
    seconds["total"] = sum(seconds.values())
    report["seconds"] = seconds
    return report


def _majority(targets: list[int]) -> tuple[int, float]:
    """The most frequent label index and its share: the accuracy of always answering it."""
    label = max(set(targets), key=targets.count)
    return label, targets.count(label) / len(targets)


def bundle_test_accuracy(bundle: dict) -> float | None:
    """The shipped bundle's test accuracy: its int8 model's when it shipped int8, else its fp32 model's."""
    return bundle.get("int8_test_accuracy") if bundle.get("precision") == "int8" else bundle.get("fp32_test_accuracy")


def _shipping_rule(disagreement: dict | None) -> str:
    from gendistill.compressor.distill import SHIP_MARGIN

    if disagreement is None:  # a distill stage made before the rule read the dev texts where the students disagree
        return "The better on dev was shipped."
    return (f"Of the dev texts only one of them gets right, {disagreement['only_distilled_right']} are the generation-distillation "
            f"student's and {disagreement['only_labeled_only_right']} the labeled-only one's; the labeled-only student is shipped when "
            f"it has at least {SHIP_MARGIN} more (a one-text edge on a small dev set is noise).")


def render_markdown(report: dict) -> str:
    lines = [f"# gendistill report: {report['dataset']}", ""]
    if report.get("warning"):
        lines += [f"**Warning: {report['warning']}**", ""]
    lines += ["![accuracy against parameters](report.png)", ""]
    lines.append(
        f"Labels: {', '.join(report['labels'])}. Training examples: {report['splits'].get('train')} "
        f"({report['per_class'] or 'all'} per class), dev {report['splits'].get('dev')}, test {report['splits'].get('test')}."
    )
    if "synthetic" in report:
        s = report["synthetic"]
        lines.append(f"Synthetic texts: {s['kept']} kept of {s['requested']} requested ({s['sampled']} sampled).")
        if s.get("distilled") is not None and s["distilled"] < s["kept"]:
            lines.append(f"The student learned from the {s['distilled']} of them the teacher is surest of (`--keep-confident`, `--keep-share`).")
        near = s.get("nearest_training_similarity") or {}
        if near.get("synthetic") is not None and near.get("dev") is not None:
            lines.append(f"Are they on-topic? Median TF-IDF cosine to the nearest training text: {near['synthetic']:.2f} (real dev texts: {near['dev']:.2f}).")
        if s.get("synthetic_confident_share") is not None and s.get("test_confident_share") is not None:
            lines.append(f"The teacher is at least {CONFIDENT:.0%} sure of {pct(s['synthetic_confident_share'])} of them, and of {pct(s['test_confident_share'])} "
                         "of the real test texts: a synthetic share far below the real one means garbled or off-topic synthesis.")
    if report.get("user_unlabeled"):
        u = report["user_unlabeled"]
        lines.append(f"Real unlabeled texts (`--unlabeled {u['file']}`): {u['texts']}, labeled by the teacher and distilled on beside the synthetic ones.")
    lines += ["", "| model | test accuracy | macro-F1 | parameters | size |", "|---|---|---|---|---|"]
    names = {"teacher": "teacher", "student": "student (generation-distillation{})", "student_labeled_only": "student, labeled data only{}"}
    for key, title in names.items():
        if key in report:
            r = report[key]
            title = title.format(f", {r['architecture']}" if r.get("architecture") else "")  # absent from reports made before it was recorded
            lines.append(f"| {title} | {pct(r['test_accuracy'])} | {pct(r['test_macro_f1'])} | {r['params']:,} | {size(r['bytes'])} |")
    if "bundle" in report:
        b = report["bundle"]
        acc = bundle_test_accuracy(b)
        bundle_bytes = (b.get("bytes") or {}).get(b.get("precision"))
        tokenizer = f" + {size(b['tokenizer_bytes'])} tokenizer" if b.get("tokenizer_bytes") else ""  # absent from bundles made before it was recorded
        lines.append(f"| student, exported ONNX {b.get('precision')} | {pct(acc)} | - | same | {size(bundle_bytes)}{tokenizer} |")
    if "tfidf_svm" in report:
        r = report["tfidf_svm"]
        lines.append(f"| TF-IDF + linear SVM (tuned on dev) | {pct(r['test_accuracy'])} | {pct(r['test_macro_f1'])} | {r['params']:,} | {size(r['bytes'])} |")
    if "majority_class_test_accuracy" in report:
        lines.append(f"| always the most frequent test class | {pct(report['majority_class_test_accuracy'])} | - | 0 | - |")
    if "shipped" in report:
        sh = report["shipped"]
        which = "generation-distillation student" if sh["student"] == "generation-distillation" else "labeled-only student"
        lines += ["", f"Shipped in the bundle: the {which} (dev accuracy {pct(sh['dev_accuracy'])} generation-distillation vs "
                  f"{pct(sh['labeled_only_dev_accuracy'])} labeled-only). " + _shipping_rule(sh.get("dev_disagreement"))]
    if "student_vs_teacher" in report:
        lines += ["", f"The student keeps {pct(report['student_vs_teacher'])} of the teacher's accuracy with {report['compression']:.0f}x fewer parameters."]
    if "bundle" in report:
        b = report["bundle"]
        latency = b.get("latency_ms") or {}
        checks = [f"fp32 vs PyTorch max |logit diff| {b['fp32_vs_torch_max_abs_diff']:.2e}", f"batch-1 latency fp32 {ms(latency.get('fp32_batch1'))}"]
        if b.get("precision") == "int8":
            agreement = f"int8 vs fp32 agreement {pct(b.get('int8_vs_fp32_agreement'))}"
            if b.get("int8_check"):  # absent from bundles made before int8 had recipes
                agreement += f" on {b['int8_check']['texts']} texts (recipe {b['int8_check']['recipe']})"
            checks += [f"int8 {ms(latency.get('int8_batch1'))}", agreement]
        lines += ["", "## Exported bundle", "", f"`{b['path']}` ({b.get('precision')}): " + ", ".join(checks) + " (onnxruntime, 1 thread)."]
        if b.get("int8_refused"):
            lines += ["", f"The bundle is fp32 because {b['int8_refused']}."]
    if "student" in report:
        lines += ["", "## Per class (student / teacher F1)", "", "| label | student F1 | teacher F1 | support |", "|---|---|---|---|"]
        for i, label in enumerate(report["labels"]):
            s, t = report["student"]["per_class"][i], report["teacher"]["per_class"][i]
            lines.append(f"| {label} | {pct(s['f1'])} | {pct(t['f1'])} | {s['support']} |")
    if "teacher" in report and report["teacher"].get("reliability"):
        t, r = report["teacher"], report["teacher"]["reliability"]
        recipe = f"recipe {t['recipe']}, {t.get('pooling') or 'its own'} pooling, " if t.get("recipe") else ""
        temperature = f"temperature {t['temperature']:.3g}; " if t.get("temperature") else ""
        lines += ["", "## Teacher soft labels", "", f"Teacher: {recipe}{temperature}on test its mean confidence is {pct(r['mean_confidence'])} "
                  f"and its expected calibration error {pct(r['ece'])} (reliability diagram in report.png)."]
        s = report.get("synthetic", {})
        if s.get("synthetic_confidence_per_class"):
            per_class = ", ".join(f"{label} {s['synthetic_label_counts'][i]} texts at {pct(c) if c is not None else '-'}"
                                  for i, (label, c) in enumerate(zip(report["labels"], s["synthetic_confidence_per_class"])))
            lines.append(f"On the synthetic texts (mean max-probability {pct(s['synthetic_mean_max_probability'])}), per class the teacher predicts: {per_class}.")
        if report.get("annotation"):
            a = report["annotation"]
            check = a.get("engine_check") or {}
            fidelity = ""
            if a["engine"] != "torch" and check.get("transfer_texts"):
                recipe = f" recipe {check['recipe']}" if check.get("recipe") else ""
                fidelity = (f"{recipe}: on {check['transfer_texts']} transfer texts it gives fp32 torch's label to "
                            f"{pct(check['transfer_argmax_agreement'])}, mean |probability difference| {check['transfer_probability_difference']:.3f}")
                if "test" not in check.get("labeled_splits", []):  # no fp32 pass over test was needed for its check
                    fidelity += "; it gave the teacher's test logits too"
            elif check.get("skipped"):
                fidelity = f": {check['skipped']}"
            lines.append(f"Annotation: {a['texts']:,} texts at {a['texts_per_second']:.1f} texts/s ({a['engine']}{fidelity}).")
    if "generator" in report:
        g = report["generator"]
        lines += ["", f"Generator dev perplexity: {g['dev_perplexity_before']:.1f} before fine-tuning, {g['dev_perplexity_after']:.1f} after."]
    lines += ["", "## Seconds per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in report["seconds"].items()]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: Path) -> None:
    """Accuracy against size: what compression cost, at a glance (report.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(title, report[key]["params"], report[key]["test_accuracy"]) for key, title in
              (("teacher", "teacher"), ("student", "student (gen-distill)"), ("student_labeled_only", "student, labeled only")) if key in report]
    bins = (report.get("teacher", {}).get("reliability") or {}).get("bins")
    fig, axes = plt.subplots(1, 2 if bins else 1, figsize=(10 if bins else 6, 4), dpi=120, squeeze=False)
    ax = axes[0][0]
    if bins:
        right = axes[0][1]
        right.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfectly calibrated")
        right.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="#444444", label="teacher")
        for b in bins:
            right.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
        right.set_xlabel("teacher confidence (max probability)")
        right.set_ylabel("teacher accuracy")
        right.set_title(f"teacher reliability on test (ECE {100 * report['teacher']['reliability']['ece']:.1f}%)", fontsize=10)
        right.grid(True, alpha=0.3)
        right.legend(fontsize=8)
    for (title, params, acc), color in zip(points, ("#444444", "#4f46e5", "#a5b4fc")):
        ax.scatter(params, 100 * acc, s=80, color=color, zorder=3)
        ax.annotate(f"{title}\n{100 * acc:.1f}%", (params, 100 * acc), textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.set_xscale("log")
    ax.margins(y=0.2)
    ax.set_xlim(min(p for _, p, _ in points) / 3, max(p for _, p, _ in points) * 20)
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report['dataset']}: {report['splits'].get('train')} labeled examples", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png"), binary=True)
    plt.close(fig)


def write_report(run_dir: str | Path) -> dict:
    report = build_report(run_dir)
    write_json_atomic(Path(run_dir) / "report.json", report)
    if "teacher" in report:
        plot_report(report, Path(run_dir) / "report.png")
    write_text_atomic(Path(run_dir) / "report.md", render_markdown(report))
    return report
