"""Build a verified bundle (runtime.bundle's layout) from a trained student: the export stage.

The bundle is built in a sibling `<out>.partial/` directory and renamed into place only after every
check passed, so a failed or killed export never leaves a half-written bundle under the real name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bundle import LAYOUT, write_json_atomic, write_manifest
from runtime.errors import GendistillError

QUANTIZE_CHOICES = ("int8", "none")
BATCH_SIZE = 64
"""Texts per padded batch for calibration and checks: batches make both fast, and padding is exact."""


@dataclass
class ExportSettings:
    """How the export stage builds the bundle; saved in bundle.json as `export_settings`."""

    quantize: str = "int8"
    """"int8": static QDQ, calibrated on real texts, per-channel weights (model.onnx is int8); "none": fp32."""
    keep_fp32: bool = False
    """Also keep the fp32 graph as model.fp32.onnx (int8 only; with "none" model.onnx is fp32)."""
    mobile: bool = False
    """Also write model.ort (ONNX Runtime mobile format) and required_operators_and_types.config."""
    opset: int = 18
    """ONNX opset the exporter targets (18: the dynamo exporter's native opset, onnxruntime >= 1.14 runs it)."""
    calibration_size: int = 512
    """Real texts (train, then dev and unlabeled if train is short) used to calibrate int8 ranges."""
    golden_size: int = 300
    """About how many strings golden.jsonl holds (edge cases always included)."""
    threads: int = 1
    """onnxruntime intra-op threads for the latency measurement (1 is often fastest on small CPUs)."""

    def __post_init__(self):
        if self.quantize not in QUANTIZE_CHOICES:
            raise GendistillError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {self.quantize!r}.")
        if self.keep_fp32 and self.quantize == "none":
            raise GendistillError("--keep-fp32 only applies with --quantize int8: with --quantize none model.onnx already is the fp32 model.")
        if not 7 <= self.opset <= 23:
            raise GendistillError(f"opset must be between 7 and 23 (18 is recommended), not {self.opset}.")
        if self.calibration_size < 1:
            raise GendistillError(f"calibration_size must be at least 1, not {self.calibration_size}.")
        if self.golden_size < 0:
            raise GendistillError(f"golden_size must be 0 or more, not {self.golden_size}.")
        if self.threads < 1:
            raise GendistillError(f"threads must be at least 1, not {self.threads}.")


def export_bundle(student_dir, out_dir, *, labels: list[str], calibration_texts: list[str], test_texts: list[str],
                  test_labels: list[int], settings: ExportSettings, replace: bool = False) -> dict:
    """Export, quantize, check and write the bundle at `out_dir`; returns the manifest written.

    `out_dir` must not exist or be empty, unless `replace` (the pipeline re-making its own bundle):
    then the old bundle is swapped out only once the new one has passed every check.
    Raises GendistillError, leaving `out_dir` untouched, when the input is bad or a check fails.
    """
    student_dir, out_dir = Path(student_dir), Path(out_dir)
    _check_inputs(student_dir, out_dir, labels, test_texts, test_labels, replace)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():  # left by an export that was killed; it is ours to remove
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="gendistill-export-") as work:
            manifest = _build(student_dir, partial, Path(work), labels, calibration_texts, test_texts, test_labels, settings)
        _move_into_place(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def run_export(settings: ExportSettings, run_dir, out_dir=None) -> Path:
    """The pipeline's last stage: bundle the run's distilled student; returns the bundle directory.

    Calibrates on real texts from data/train.jsonl (topped up from dev and unlabeled when train is
    short) and checks on data/test.jsonl. With the default `out_dir` (RUN_DIR/bundle) a previous
    bundle of the run is replaced; an explicit `out_dir` must not exist or be empty.
    """
    from compressor import rundir

    run_dir = Path(run_dir)
    if not rundir.is_complete(run_dir, "distill"):
        raise GendistillError(
            f"{run_dir} has no finished student ({rundir.stage_path(run_dir, 'distill') / 'metrics.json'} is missing); "
            "run `gendistill compress` into it first."
        )
    replace = out_dir is None
    out_dir = rundir.stage_path(run_dir, "export") if out_dir is None else Path(out_dir)
    labels = rundir.load_labels(run_dir)
    test_texts, test_labels = rundir.load_split(run_dir, "test")
    export_bundle(
        rundir.stage_path(run_dir, "distill") / "student", out_dir, labels=labels,
        calibration_texts=calibration_texts_of(run_dir, settings.calibration_size),
        test_texts=test_texts, test_labels=test_labels, settings=settings, replace=replace,
    )
    return out_dir


def calibration_texts_of(run_dir: Path, size: int) -> list[str]:
    """`size` real texts, drawn reproducibly from train first, then dev and unlabeled if train is short."""
    from compressor import rundir

    texts: list[str] = []
    for split in ("train", "dev", "unlabeled"):
        if len(texts) >= size:
            break
        if (rundir.stage_path(run_dir, "data") / f"{split}.jsonl").is_file():
            split_texts = [t for t in rundir.load_split(run_dir, split)[0] if t.strip()]
            random.Random(0).shuffle(split_texts)
            texts += split_texts[: size - len(texts)]
    return texts


def _check_inputs(student_dir: Path, out_dir: Path, labels, test_texts, test_labels, replace: bool) -> None:
    for name in ("student.json", "student.safetensors", "tokenizer.model"):
        if not (student_dir / name).is_file():
            raise GendistillError(f"{student_dir} has no {name}, so it is not a trained student; run `gendistill compress` first.")
    if out_dir.exists() and not out_dir.is_dir():
        raise GendistillError(f"{out_dir} is a file, not a directory; pass a new folder with --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replace:
        raise GendistillError(f"{out_dir} already exists and is not empty; pass a new folder with --out or delete it first.")
    if not test_texts:
        raise GendistillError("There are no test texts to check the export on; the run's data/test.jsonl must not be empty.")
    if len(test_texts) != len(test_labels) or any(not 0 <= y < len(labels) for y in test_labels):
        raise GendistillError(f"Every test text needs one label from {labels}; fix the run's data/test.jsonl.")


def _build(student_dir: Path, partial: Path, work: Path, labels, calibration_texts, test_texts, test_labels,
           settings: ExportSettings) -> dict:
    """Write every bundle file into `partial`, checking as it goes; scratch files go to `work`."""
    from compressor.student import StudentTokenizer, count_parameters, load_student
    from export import golden, verify
    from export.onnx_export import INPUT_AXES, INPUT_NAME, OUTPUT_AXES, OUTPUT_NAME, export_fp32, run_logits, session
    from export.quantize import quantize_int8

    model, config = load_student(student_dir)
    if config.num_labels != len(labels):
        raise GendistillError(f"The student has {config.num_labels} outputs but the run has {len(labels)} labels; re-run distillation.")
    tokenizer = StudentTokenizer(student_dir / "tokenizer.model", config)
    int8 = settings.quantize == "int8"
    if not int8:
        fp32_path = partial / LAYOUT.model  # the fp32 graph is what ships
    else:  # the fp32 graph is quantized from, checked against, and shipped only with keep_fp32
        fp32_path = (partial if settings.keep_fp32 else work) / LAYOUT.model_fp32
    opset = export_fp32(model, config, fp32_path, settings.opset)

    # Check 1: fp32 ONNX vs PyTorch, on identical padded batches of the real test texts.
    import torch

    test_batches = _padded_batches(tokenizer, test_texts)
    with torch.no_grad():
        torch_logits = np.concatenate([model(torch.from_numpy(batch)).numpy() for batch in test_batches])
    fp32_session = session(fp32_path)
    verify.check_io(fp32_session, config.num_labels, "fp32")
    fp32_logits = run_logits(fp32_session, test_batches)
    labels_array = np.asarray(test_labels)
    metrics = {
        "fp32_vs_torch_max_abs_diff": verify.check_fp32_against_torch(torch_logits, fp32_logits),
        "int8_vs_fp32_agreement": None,
        "torch_test_accuracy": verify.accuracy(torch_logits, labels_array),
        "fp32_test_accuracy": verify.accuracy(fp32_logits, labels_array),
        "int8_test_accuracy": None,
        "test_examples": len(test_texts),
    }

    # Check 2: int8 vs fp32.
    if int8:
        if not calibration_texts:
            raise GendistillError("There are no real texts to calibrate int8 on; the run's data/train.jsonl must not be empty.")
        quantize_int8(fp32_path, partial / LAYOUT.model, _padded_batches(tokenizer, calibration_texts))
        int8_session = session(partial / LAYOUT.model)
        verify.check_io(int8_session, config.num_labels, "int8")
        metrics.update(verify.check_int8_against_fp32(fp32_logits, run_logits(int8_session, test_batches), labels_array))

    shipped_logits = run_logits(int8_session, test_batches) if int8 else fp32_logits
    if settings.mobile:
        metrics["mobile_vs_onnx_max_abs_diff"] = _write_mobile(partial, work, test_batches)

    single_inputs = [tokenizer.pad([ids]) for ids in tokenizer.encode(test_texts[:100])]
    metrics["latency_ms"] = {
        "fp32_batch1": verify.batch1_latency_ms(fp32_path, single_inputs, settings.threads),
        "int8_batch1": verify.batch1_latency_ms(partial / LAYOUT.model, single_inputs, settings.threads) if int8 else None,
    }
    metrics["bytes"] = {"fp32": fp32_path.stat().st_size, "int8": (partial / LAYOUT.model).stat().st_size if int8 else None}

    # Check 3 (its reference): golden strings, run one at a time through the model that ships.
    longest_test_text = max(test_texts, key=len)
    golden_texts = golden.golden_texts(test_texts, settings.golden_size, longest_test_text)
    golden.write_golden(partial / LAYOUT.golden, golden.golden_rows(golden_texts, tokenizer, session(partial / LAYOUT.model)))

    shutil.copyfile(student_dir / "tokenizer.model", partial / LAYOUT.tokenizer)
    write_json_atomic(partial / LAYOUT.labels, list(labels))
    manifest = {
        "labels": list(labels),
        "preprocessing": {"lowercase": config.lowercase, "digits_to_zero": config.digits_to_zero, "max_length": config.max_length,
                          "min_length": config.min_length, "pad_id": config.pad_id},
        "tokenizer": {"file": LAYOUT.tokenizer, "type": "sentencepiece", "add_bos": False, "add_eos": False},
        "model": {
            "file": LAYOUT.model, "precision": "int8" if int8 else "fp32", "opset": opset, "architecture": config.architecture,
            "params": count_parameters(model),
            "inputs": [{"name": INPUT_NAME, "dtype": "int64", "shape": INPUT_AXES}],
            "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": OUTPUT_AXES}],
        },
        "metrics": metrics,
        "examples": _examples(test_texts, labels_array, shipped_logits.argmax(1), len(labels)),
        "export_settings": asdict(settings),
        "versions": _versions(),
    }
    return write_manifest(partial, manifest)


def _examples(test_texts: list[str], test_labels: np.ndarray, predicted: np.ndarray, num_labels: int) -> list[str]:
    """One short real test text per label that the shipped model gets right: demo apps show these."""
    examples = []
    for label in range(num_labels):
        right = [i for i in np.flatnonzero((test_labels == label) & (predicted == label)) if 4 <= len(test_texts[i].split()) <= 16]
        if right:
            examples.append(min((test_texts[i] for i in right), key=lambda t: (abs(len(t.split()) - 9), t)))
    return examples


def _padded_batches(tokenizer, texts: list[str]) -> list[np.ndarray]:
    ids = tokenizer.encode(texts)
    return [tokenizer.pad(ids[i : i + BATCH_SIZE]) for i in range(0, len(ids), BATCH_SIZE)]


def _write_mobile(partial: Path, work: Path, test_batches: list[np.ndarray]) -> float:
    """Convert model.onnx to model.ort plus the operator/type config a reduced mobile build needs; check it."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from export.onnx_export import run_logits, session
    from export.verify import check_mobile_against_onnx

    # Convert a copy alone in its own folder: the converter converts every .onnx it finds and names
    # the config after the folder's contents.
    source, converted = work / "mobile-source", work / "mobile"
    source.mkdir()
    shutil.copyfile(partial / LAYOUT.model, source / LAYOUT.model)
    # The converter reports progress with print and an INFO logger of its own; library code stays quiet.
    converter_log = logging.getLogger("ort_format_model.utils")
    previous_level = converter_log.level
    converter_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            convert_onnx_models_to_ort(source, output_dir=converted, optimization_styles=[OptimizationStyle.Fixed],
                                       enable_type_reduction=True)
    finally:
        converter_log.setLevel(previous_level)
    for name in (LAYOUT.model_ort, LAYOUT.ort_operators):
        shutil.move(str(converted / name), partial / name)
    return check_mobile_against_onnx(run_logits(session(partial / LAYOUT.model), test_batches),
                                     run_logits(session(partial / LAYOUT.model_ort), test_batches))


def _move_into_place(partial: Path, out_dir: Path) -> None:
    """Rename the finished bundle to `out_dir`; an old bundle there is moved aside first, then removed."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = out_dir.with_name(out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(partial, out_dir)
        shutil.rmtree(old)
    else:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty: os.replace cannot rename a directory onto it on every platform
        os.replace(partial, out_dir)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import onnx
    import onnxruntime
    import sentencepiece
    import torch

    try:
        gendistill = version("gendistill")
    except PackageNotFoundError:
        gendistill = "unknown"
    return {"gendistill": gendistill, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "sentencepiece": sentencepiece.__version__}
