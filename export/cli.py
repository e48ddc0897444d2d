"""`gendistill export RUN_DIR --out BUNDLE`: parse options, call run_export, print what was measured."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle directory to create (must not exist or be empty).")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True,
              help="int8: static QDQ calibrated on training texts; none: ship the fp32 graph.")
@click.option("--keep-fp32", is_flag=True, help="Also keep the fp32 graph as model.fp32.onnx (with int8).")
@click.option("--mobile", is_flag=True, help="Also write model.ort and the operator config for onnxruntime-mobile.")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads for the latency measurement.")
def export(run_dir: Path, out_dir: Path, quantize: str, keep_fp32: bool, mobile: bool, threads: int):
    """Export RUN_DIR's student to a verified ONNX bundle (int8 by default) and print its figures."""
    from export.bundle import ExportSettings, run_export
    from runtime.bundle import load_manifest

    settings = ExportSettings(quantize=quantize, keep_fp32=keep_fp32, mobile=mobile, threads=threads)
    bundle_dir = run_export(settings, run_dir, out_dir)
    click.echo(format_report(load_manifest(bundle_dir, verify=True), bundle_dir))


def format_report(manifest: dict, bundle_dir: Path) -> str:
    """The table `gendistill export` prints: sizes, parameters, batch-1 latency and the check figures."""
    from export.verify import MAX_FP32_DIFF, MIN_INT8_AGREEMENT

    m, model = manifest["metrics"], manifest["model"]
    latency, sizes = m["latency_ms"], m["bytes"]
    threads = manifest["export_settings"]["threads"]

    def size(n):
        return "-" if n is None else f"{n / 1000:,.1f} kB"

    def ms(x):
        return "-" if x is None else f"{x:.3f} ms"

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
        f"{'fp32 vs PyTorch max |logit diff|':<34}{m['fp32_vs_torch_max_abs_diff']:>12.1e}   (limit {MAX_FP32_DIFF:.0e})",
    ]
    if m["int8_vs_fp32_agreement"] is not None:
        lines.append(f"{'int8 vs fp32 label agreement':<34}{percent(m['int8_vs_fp32_agreement']):>12}   (limit {MIN_INT8_AGREEMENT:.0%})")
    if "mobile_vs_onnx_max_abs_diff" in m:
        lines.append(f"{'model.ort vs model.onnx max diff':<34}{m['mobile_vs_onnx_max_abs_diff']:>12.1e}")
    files = ", ".join(sorted(manifest["files"]))
    lines += ["", f"Bundle ({model['precision']} model.onnx, opset {model['opset']}) written to {bundle_dir}: bundle.json, {files}"]
    return "\n".join(lines)
