"""`gendistill compress` and `gendistill demo`: parse options, build settings, call run_compress."""

from __future__ import annotations

import click

from compressor.rundir import STAGES

DEMO_SYNTHETIC = 2000


def pipeline_options(function):
    """The options `compress` and `demo` share (models, synthesis, distillation, export)."""
    options = [
        click.option("--per-class", type=int, default=None, help="Labeled examples per class to keep (papers: 100); default all."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--teacher", default="embedded", show_default=True, help="Classifier to fine-tune: hub name or path (embedded: packaged all-MiniLM-L6-v2)."),
        click.option("--teacher-model", default=None, help="An already fine-tuned classifier to use as the teacher (skips teacher training)."),
        click.option("--teacher-epochs", type=int, default=10, show_default=True),
        click.option("--teacher-lr", type=float, default=1e-4, show_default=True),
        click.option("--max-length", type=int, default=128, show_default=True, help="Teacher and student input length (tokens)."),
        click.option("--generator", default="embedded", show_default=True, help="Causal LM to fine-tune: hub name or path (embedded: packaged SmolLM2-135M)."),
        click.option("--generator-epochs", type=int, default=1, show_default=True),
        click.option("--generator-lr", type=float, default=2e-5, show_default=True),
        click.option("--synthetic", type=int, default=DEMO_SYNTHETIC, show_default=True, help="Unique synthetic texts to generate."),
        click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature."),
        click.option("--top-k", type=int, default=0, show_default=True, help="0 = full distribution (paper)."),
        click.option("--top-p", type=float, default=1.0, show_default=True),
        click.option("--max-new-tokens", type=int, default=48, show_default=True),
        click.option("--synthesis-batch", type=int, default=64, show_default=True),
        click.option("--synthesis-shard", type=int, default=256, show_default=True, help="Texts per shard file; a killed run loses at most one."),
        click.option("--student", type=click.Choice(["kim-cnn", "res-cnn"]), default="kim-cnn", show_default=True),
        click.option("--embeddings", type=click.Choice(["teacher", "glove", "bpemb", "random"]), default="teacher", show_default=True,
                     help="Initial subword vectors for the student."),
        click.option("--bpemb-model", type=click.Path(), default=None, help="BPEmb sentencepiece .model file (with --bpemb-vectors)."),
        click.option("--bpemb-vectors", type=click.Path(), default=None, help="BPEmb word2vec vectors file."),
        click.option("--bpemb", default=None, help="LANG:VOCAB:DIM to download BPEmb with the bpemb package (needs internet)."),
        click.option("--vocab-size", type=int, default=8000, show_default=True, help="Student sentencepiece vocabulary size."),
        click.option("--labels", "label_mode", type=click.Choice(["soft", "hard"]), default="soft", show_default=True, help="Teacher soft labels (KL) or argmax (CE)."),
        click.option("--lambda", "alpha", type=float, default=0.5, show_default=True, help="Weight of the true-label loss; 1 - lambda weighs distillation."),
        click.option("--kd-temperature", type=float, default=1.0, show_default=True),
        click.option("--student-epochs", type=int, default=30, show_default=True),
        click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True),
        click.option("--mobile", is_flag=True, help="Also write model.ort for onnxruntime-mobile."),
        click.option("--no-export", is_flag=True, help="Stop after evaluation (no ONNX bundle)."),
        click.option("--from", "from_stage", type=click.Choice(STAGES), default=None, help="Re-run this stage and the stages built on it (a new teacher keeps the generator and synthetic texts)."),
        click.option("--force", is_flag=True, help="Re-run every stage."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_settings(source, text_column=None, label_column=None, dev=None, test=None, dev_size=200, test_size=2000, **o):
    from compressor.pipeline import (AnnotateSettings, CompressSettings, DataSettings, DistillSettings, EvaluateSettings,
                                     GeneratorSettings, SynthesizeSettings, TeacherSettings)

    export = None
    if not o["no_export"]:
        from export.bundle import ExportSettings

        export = ExportSettings(quantize=o["quantize"], mobile=o["mobile"])
    seed = o["seed"]
    return CompressSettings(
        data=DataSettings(source=source, text_column=text_column, label_column=label_column, dev=dev, test=test,
                          per_class=o["per_class"], dev_size=dev_size, test_size=test_size, seed=seed),
        teacher=TeacherSettings(model=o["teacher"], finetuned=o["teacher_model"], epochs=o["teacher_epochs"], lr=o["teacher_lr"],
                                max_length=o["max_length"], seed=seed),
        generator=GeneratorSettings(model=o["generator"], epochs=o["generator_epochs"], lr=o["generator_lr"], seed=seed),
        synthesize=SynthesizeSettings(count=o["synthetic"], temperature=o["temperature"], top_k=o["top_k"], top_p=o["top_p"],
                                      max_new_tokens=o["max_new_tokens"], batch_size=o["synthesis_batch"],
                                      shard_size=o["synthesis_shard"], seed=seed),
        annotate=AnnotateSettings(),
        distill=DistillSettings(architecture=o["student"], embeddings=o["embeddings"], bpemb_model=o["bpemb_model"],
                                bpemb_vectors=o["bpemb_vectors"], bpemb=o["bpemb"], vocab_size=o["vocab_size"], labels=o["label_mode"],
                                alpha=o["alpha"], temperature=o["kd_temperature"], epochs=o["student_epochs"], max_length=o["max_length"], seed=seed),
        evaluate=EvaluateSettings(),
        export=export,
    )


def summary_table(report: dict) -> str:
    rows = [("model", "test acc", "macro-F1", "params", "size")]
    for key, title in (("teacher", "teacher"), ("student", "student (gen-distill)"), ("student_labeled_only", "student, labeled only")):
        if key in report:
            r = report[key]
            rows.append((title, f"{100 * r['test_accuracy']:.1f}%", f"{100 * r['test_macro_f1']:.1f}%", f"{r['params']:,}", f"{r['bytes'] / 1e6:.2f} MB"))
    if "bundle" in report:
        b = report["bundle"]
        precision = b.get("precision", "int8")
        acc = b.get(f"{precision}_test_accuracy")
        size = (b.get("bytes") or {}).get(precision)
        latency = (b.get("latency_ms") or {}).get(f"{precision}_batch1")
        rows.append((f"bundle ({precision} ONNX)", f"{100 * acc:.1f}%" if acc is not None else "-", "-",
                     f"{latency:.3f} ms/text" if latency is not None else "-", f"{size / 1e6:.2f} MB" if size else "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _run(source, run_dir, from_stage, force, **options):
    from compressor import require_extra

    require_extra("torch", "transformers", "onnx")
    import transformers

    from compressor.pipeline import run_compress

    # Our own bars show stage progress; transformers' per-file load/save bars would only add noise.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()  # e.g. the "classifier.weight MISSING" report a new head always gets

    settings = build_settings(source, **options)
    try:
        report = run_compress(settings, run_dir, from_stage=from_stage, force=force)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; finished stages are kept in {run_dir} and the same command resumes from there.", err=True)
        raise SystemExit(130) from None
    click.echo(summary_table(report))
    click.echo(f"\nReport: {run_dir}/report.md" + (f"   Bundle: {report['bundle']['path']}" if "bundle" in report else ""))
    return report


@click.command()
@click.argument("data")
@click.option("--text-column", default=None, help="Column with the texts (detected if omitted).")
@click.option("--label-column", default=None, help="Column with the labels (detected if omitted).")
@click.option("--dev", type=click.Path(), default=None, help="Separate dev file (else split from DATA).")
@click.option("--test", type=click.Path(), default=None, help="Separate test file (else split from DATA).")
@click.option("--dev-size", type=int, default=200, show_default=True)
@click.option("--test-size", type=int, default=2000, show_default=True)
@click.option("--out", "run_dir", type=click.Path(), required=True, help="Run directory (created; re-running resumes).")
@pipeline_options
def compress(data, run_dir, from_stage, force, **options):
    """Compress a classifier for DATA (CSV/TSV/JSONL, a `datasets` dir, or rotten-tomatoes / bbc-news)."""
    _run(data, run_dir, from_stage, force, **options)


@click.command()
@click.option("--out", "run_dir", type=click.Path(), default="runs/demo", show_default=True, help="Run directory (re-running resumes).")
@pipeline_options
@click.pass_context
def demo(ctx, run_dir, from_stage, force, **options):
    """The embedded default: Rotten Tomatoes, 100 labeled examples per class, packaged teacher and generator."""
    if ctx.get_parameter_source("per_class").name == "DEFAULT":
        options["per_class"] = 100
    _run("rotten-tomatoes", run_dir, from_stage, force, **options)
