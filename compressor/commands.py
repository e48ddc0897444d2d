"""`gendistill compress`, `demo` and `export`: click wrappers over gendistill.compressor.api.

Their options are generated from the stages' settings dataclasses (gendistill.runtime.settings), the
one place where each default, choice list and help text lives; nothing here imports torch, so `--help`
is instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from gendistill.compressor.api import DEMO
from gendistill.compressor.pipeline import STAGE_SETTINGS
from gendistill.compressor.rundir import STAGES
from gendistill.export.bundle import ExportSettings
from gendistill.runtime.formatting import ms, pct, size, table
from gendistill.runtime.settings import click_options

RUN_OPTIONS = [
    click.option("--no-export", is_flag=True, help="Stop after evaluation (no ONNX bundle)."),
    click.option("--from", "from_stage", type=click.Choice(STAGES), default=None,
                 help="Re-run this stage and the stages built on it (a new teacher keeps the generator and synthetic texts)."),
    click.option("--force", is_flag=True, help="Re-run every stage."),
]


def run_options(function):
    for option in reversed(RUN_OPTIONS):
        function = option(function)
    return function


def summary_table(report: dict) -> str:
    rows = [("model", "test acc", "macro-F1", "params", "size")]
    for key, title in (("teacher", "teacher"), ("student", "student (gen-distill)"), ("student_labeled_only", "student, labeled only")):
        if key in report:
            r = report[key]
            rows.append((title, pct(r["test_accuracy"]), pct(r["test_macro_f1"]), f"{r['params']:,}", size(r["bytes"])))
    if "bundle" in report:
        b = report["bundle"]
        precision = b.get("precision", "int8")
        tokenizer_bytes = b.get("tokenizer_bytes")  # absent from bundles made before it was recorded
        model_bytes = b.get("bytes", {}).get(precision)
        files = f"{precision} ONNX + tokenizer" if tokenizer_bytes else f"{precision} ONNX"
        rows.append((f"bundle ({files})", pct(b.get(f"{precision}_test_accuracy")), "-", ms(b.get("latency_ms", {}).get(f"{precision}_batch1")) + "/text",
                     size(None if model_bytes is None else model_bytes + (tokenizer_bytes or 0))))
    return table(rows)


def _compress(data: str, run_dir: str, from_stage: str | None, force: bool, redo_changed: bool = False, **settings) -> None:
    from gendistill.compressor.api import compress as run

    try:
        report = run(data, run_dir, from_stage=from_stage, force=force, redo_changed=redo_changed, **settings)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; finished stages are kept in {run_dir} and the same command resumes from there.", err=True)
        raise SystemExit(130) from None
    click.echo(summary_table(report))
    click.echo(f"\nReport: {run_dir}/report.md" + (f"   Bundle: {report['bundle']['path']}" if "bundle" in report else ""))
    if report.get("warning"):
        click.echo(f"\nWarning: {report['warning']}", err=True)


@click.command()
@click.argument("data")
@click.option("--out", "run_dir", type=click.Path(), required=True, help="Run directory (created; re-running resumes).")
@click_options(STAGE_SETTINGS.values())
@run_options
def compress(data, run_dir, from_stage, force, **settings):
    """Compress a classifier for DATA (CSV/TSV/JSONL, a `datasets` dir, or rotten-tomatoes / bbc-news)."""
    _compress(data, run_dir, from_stage, force, **settings)


@click.command()
@click.option("--out", "run_dir", type=click.Path(), default="runs/demo", show_default=True,
              help="Run directory (re-running resumes; stages made with other settings are re-made).")
@click_options(STAGE_SETTINGS.values(), defaults=DEMO)
@run_options
def demo(run_dir, from_stage, force, **settings):
    """The embedded default: Rotten Tomatoes, 100 labeled examples per class, packaged teacher and generator.

    Its run directory is the demo's own: a stage made with other settings (other flags, or defaults changed by an
    upgrade) is re-made with what is built on it, where `compress` refuses and names the difference."""
    _compress(DEMO["data"], run_dir, from_stage, force, redo_changed=True, **settings)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle directory to create (must not exist or be empty).")
@click_options([ExportSettings])
def export(run_dir: Path, out_dir: Path, **settings):
    """Export RUN_DIR's student to a verified ONNX bundle (int8 when it keeps fp32's labels, see --quantize) and print its figures."""
    from gendistill.compressor.api import export_run as run

    click.echo(format_export(run(run_dir, out_dir, **settings), out_dir))


def format_export(manifest: dict, bundle_dir: Path) -> str:
    """The table `gendistill export` prints: sizes, parameters, batch-1 latency and the check figures."""
    from gendistill.export.verify import MAX_FP32_DIFF, MAX_INT8_DISAGREEMENT

    m, model = manifest["metrics"], manifest["model"]
    latency, sizes = m["latency_ms"], m["bytes"]
    threads = latency["threads"]

    def percent(x):
        return "-" if x is None else f"{x:.1%}"

    rows = [
        ("", "fp32", "int8"),
        ("model file size", size(sizes["fp32"]), size(sizes["int8"])),
        (f"batch-1 latency ({threads} thread{'s' if threads > 1 else ''})", ms(latency["fp32_batch1"]), ms(latency["int8_batch1"])),
        (f"test accuracy ({m['test_examples']} texts)", percent(m["fp32_test_accuracy"]), percent(m["int8_test_accuracy"])),
    ]
    lines = [f"{a:<34}{b:>12}{c:>12}" for a, b, c in rows]
    lines += [
        f"{'parameters':<34}{model['params']:>12,}",
        f"{'PyTorch test accuracy':<34}{percent(m['torch_test_accuracy']):>12}",
        f"{'fp32 vs PyTorch max |logit diff|':<34}{m['fp32_vs_torch_max_abs_diff']:>12.1e}   (limit {m.get('fp32_vs_torch_limit', MAX_FP32_DIFF):.1e})",
    ]
    if m["int8_vs_fp32_agreement"] is not None:
        check = m["int8_check"]
        lines.append(f"{'int8 vs fp32 label agreement':<34}{percent(m['int8_vs_fp32_agreement']):>12}   (on {check['texts']} texts, "
                     f"recipe {check['recipe']}; at most {MAX_INT8_DISAGREEMENT:.0%} may differ at {check['confidence']:.1%} confidence)")
    if "mobile_vs_onnx_max_abs_diff" in m:
        lines.append(f"{'model.ort vs model.onnx max diff':<34}{m['mobile_vs_onnx_max_abs_diff']:>12.1e}")
    files = ", ".join(sorted(manifest["files"]))
    lines += ["", f"Bundle ({model['precision']} model.onnx, opset {model['opset']}) written to {bundle_dir}: bundle.json, {files}"]
    return "\n".join(lines)


@click.command("bench-synthesize")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(min=1), default=512, show_default=True, help="Texts each backend samples.")
@click.option("--backends", default=None, help="Comma-separated backends to compare (default: every installed one of hf, ctranslate2, ctranslate2-one-worker).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Texts sampled together (default: the run's --synthesis-batch).")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object {"backends": {"hf": {...}, "ctranslate2": {...}}, ...}.')
def bench_synthesize(run_dir: Path, count: int, backends: str | None, batch_size: int | None, as_json: bool):
    """Sample with every backend side by side from RUN_DIR's generator: speed, memory and sample quality."""
    import json

    from gendistill.compressor.bench_synthesize import bench_synthesize as run
    from gendistill.compressor.bench_synthesize import format_table
    from gendistill.runtime.errors import require_extra

    require_extra()
    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    result = run(run_dir, count=count, backends=names, batch_size=batch_size)
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))


@click.command("bench-teacher")
@click.option("--dataset", "datasets", multiple=True, default=["rotten-tomatoes"], show_default=True, help="Dataset (repeatable): rotten-tomatoes, bbc-news or a file.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1: one split and teacher each.")
@click.option("--per-class", type=click.IntRange(min=1), default=100, show_default=True, help="Labeled texts per class.")
@click.option("--teachers", default="frozen/embedded/128,frozen/embedded-minilm/128", show_default=True,
              help="Comma-separated RECIPE/MODEL/MAX_LENGTH[/bf16] teachers to compare (/bf16: fine-tuned under bfloat16 autocast; else fp32).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench-teacher"), show_default=True,
              help="Where each teacher's run directory is kept (reused on a re-run).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write results.json and RESULTS.md here.")
def bench_teacher(datasets, seeds: int, per_class: int, teachers: str, runs_dir: Path, out: Path | None):
    """Teacher recipes side by side over seeds on the benchmark's splits: accuracy, calibration, seconds."""
    import shlex
    import sys

    from gendistill.compressor.bench_teacher import bench_teacher as run
    from gendistill.compressor.bench_teacher import render
    from gendistill.runtime.errors import require_extra

    require_extra()
    command = "gendistill bench-teacher " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    result = run(list(datasets), seeds, per_class, [t.strip() for t in teachers.split(",") if t.strip()], runs_dir, out, command)
    click.echo(render(result))
