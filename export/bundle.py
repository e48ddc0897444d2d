"""Build a verified bundle (runtime.bundle's layout) from a trained student network.

`export_bundle` takes the student as a PyTorch module plus what the runtime needs to feed it (its
sentencepiece file and `InputSpec`), exports, quantizes and checks it, and writes every bundle file into
an empty directory. int8 ships only when it passes its checks against fp32 (export.verify), trying the
quantization recipes of export.quantize in turn; otherwise `--quantize auto` ships the fp32 model and
`--quantize int8` refuses. Where that directory lives, and how a finished bundle moves into place, is
the caller's business: the pipeline's export stage (compressor.export_stage) builds it as a stage.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gendistill.runtime.bundle import LAYOUT, write_json_atomic, write_manifest
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.preprocess import InputSpec, StudentInput
from gendistill.runtime.settings import Settings

BATCH_SIZE = 64
"""Texts per padded batch for calibration and checks: batches make both fast, and padding is exact."""

log = logging.getLogger(__name__)


@dataclass
class ExportSettings(Settings):
    """How the export stage builds the bundle; saved as the stage's settings.json."""

    NAMES = {"opset": "export_opset"}

    quantize: Literal["auto", "int8", "none"] = "auto"
    """auto: int8 (static QDQ, calibrated on real texts) when it passes its checks against fp32, else fp32 with a warning; int8: int8 or an error; none: fp32."""
    keep_fp32: bool = False
    """Also keep the fp32 graph as model.fp32.onnx when int8 ships."""
    mobile: bool = False
    """Also write model.ort and the operator config for onnxruntime-mobile."""
    opset: int = 18
    """ONNX opset the exporter targets (18: the dynamo exporter's native opset, onnxruntime >= 1.14 runs it)."""
    calibration_size: int = 512
    """Real texts (train, then dev and unlabeled if train is short) used to calibrate int8 ranges."""
    golden_size: int = 300
    """About how many strings golden.jsonl holds (edge cases always included)."""
    latency_threads: int = 1
    """onnxruntime threads for the export's batch-1 latency figure (1 is often fastest on small CPUs)."""

    def validate(self):
        if self.keep_fp32 and self.quantize == "none":
            raise GendistillError("--keep-fp32 only applies when int8 may ship (--quantize auto or int8): with --quantize none model.onnx already is the fp32 model.")
        self.between("opset", 7, 23)
        self.at_least("calibration_size", 1)
        self.at_least("golden_size", 0)
        self.at_least("latency_threads", 1)


def export_bundle(model, spec: InputSpec, tokenizer_file, out_dir, *, architecture: str, labels: list[str],
                  calibration_texts: list[str], check_texts: list[str], test_texts: list[str], test_labels: list[int],
                  settings: ExportSettings) -> dict:
    """Export, quantize and check the student `model` and write the bundle's files into the empty
    directory `out_dir`; returns the manifest written. int8 is calibrated on `calibration_texts` and must
    agree with fp32 on `check_texts` (other texts, as many as there are: see export.verify) and keep its
    accuracy on the test split. Raises GendistillError (one sentence) when the input is bad or a check
    fails; scratch files go to a temporary directory that is always removed.
    """
    out_dir = Path(out_dir)
    _check_inputs(out_dir, labels, test_texts, test_labels)
    with tempfile.TemporaryDirectory(prefix="gendistill-export-") as work:
        return _build(model, spec, Path(tokenizer_file), architecture, out_dir, Path(work), labels, calibration_texts,
                      check_texts, test_texts, test_labels, settings)


def _check_inputs(out_dir: Path, labels, test_texts, test_labels) -> None:
    if not out_dir.is_dir() or any(out_dir.iterdir()):
        raise GendistillError(f"{out_dir} must be an existing empty directory to write the bundle into.")
    if not test_texts:
        raise GendistillError("There are no test texts to check the export on; the run's data/test.jsonl must not be empty.")
    if len(test_texts) != len(test_labels) or any(not 0 <= y < len(labels) for y in test_labels):
        raise GendistillError(f"Every test text needs one label from {labels}; fix the run's data/test.jsonl.")


def _build(model, spec: InputSpec, tokenizer_file: Path, architecture: str, partial: Path, work: Path, labels,
           calibration_texts, check_texts, test_texts, test_labels, settings: ExportSettings) -> dict:
    """Write every bundle file into `partial`, checking as it goes; scratch files go to `work`."""
    import torch

    from gendistill.export import golden, verify
    from gendistill.export.onnx_export import INPUT_AXES, INPUT_NAME, OUTPUT_AXES, OUTPUT_NAME, export_fp32, run_logits
    from gendistill.runtime.classifier import onnx_session

    num_labels = len(labels)
    inputs = StudentInput.load(tokenizer_file, spec)
    fp32_path = work / LAYOUT.model_fp32
    model.eval()
    opset = export_fp32(model, spec.min_length, fp32_path, settings.opset)

    # Check 1: fp32 ONNX vs PyTorch, on identical padded batches of the real test texts.
    test_batches = _padded_batches(inputs, test_texts)
    with torch.no_grad():
        torch_logits = np.concatenate([model(torch.from_numpy(batch)).numpy() for batch in test_batches])
        exact = copy.deepcopy(model).double()  # float64: how far PyTorch's own float32 rounding moves the logits
        exact_logits = np.concatenate([exact(torch.from_numpy(batch)).numpy() for batch in test_batches])
    if torch_logits.shape[1] != num_labels:
        raise GendistillError(f"The student has {torch_logits.shape[1]} outputs but the run has {num_labels} labels; re-run distillation.")
    fp32_session = onnx_session(fp32_path)
    verify.check_io(fp32_session, num_labels, "fp32")
    fp32_logits = run_logits(fp32_session, test_batches)
    labels_array = np.asarray(test_labels)
    fp32_check = verify.check_fp32_against_torch(torch_logits, fp32_logits, exact_logits)
    metrics = {
        "fp32_vs_torch_max_abs_diff": fp32_check["diff"],
        "torch_rounding_max_abs_diff": fp32_check["rounding"],
        "fp32_vs_torch_limit": fp32_check["limit"],
        "int8_vs_fp32_agreement": None,
        "torch_test_accuracy": verify.accuracy(torch_logits, labels_array),
        "fp32_test_accuracy": verify.accuracy(fp32_logits, labels_array),
        "int8_test_accuracy": None,
        "test_examples": len(test_texts),
        "int8_check": None,
        "int8_refused": None,
    }

    # Check 2: int8 vs fp32, recipe after recipe; what fails every one is refused or replaced by fp32.
    int8_path = None
    if settings.quantize != "none":
        int8_path, metrics["int8_check"], refused = _int8_model(
            fp32_path, fp32_session, work, inputs, num_labels, calibration_texts, check_texts, fp32_logits, test_batches, labels_array)
        if int8_path is None and settings.quantize == "int8":
            raise GendistillError(f"--quantize int8 was refused because {refused}, so no bundle was written; "
                                  "export with --quantize auto to ship fp32 when int8 fails.")
        if int8_path is None:
            log.warning("The bundle is fp32 because %s.", refused)
            metrics["int8_refused"] = refused
        else:
            passed = metrics["int8_check"]["attempts"][-1]  # attempts stop at the first that passes
            metrics["int8_vs_fp32_agreement"] = passed["agreement"]
            metrics["int8_test_accuracy"] = passed["int8_test_accuracy"]
    int8 = int8_path is not None
    shutil.copyfile(int8_path if int8 else fp32_path, partial / LAYOUT.model)
    if int8 and settings.keep_fp32:
        shutil.copyfile(fp32_path, partial / LAYOUT.model_fp32)

    shipped_logits = run_logits(onnx_session(partial / LAYOUT.model), test_batches)
    if settings.mobile:
        metrics["mobile_vs_onnx_max_abs_diff"] = _write_mobile(partial, work, test_batches)

    single_inputs = [inputs.pad([ids]) for ids in inputs.encode(test_texts[:100])]
    metrics["latency_ms"] = {
        "threads": settings.latency_threads,
        "fp32_batch1": verify.batch1_latency_ms(fp32_path, single_inputs, settings.latency_threads),
        "int8_batch1": verify.batch1_latency_ms(partial / LAYOUT.model, single_inputs, settings.latency_threads) if int8 else None,
    }
    metrics["bytes"] = {"fp32": fp32_path.stat().st_size, "int8": (partial / LAYOUT.model).stat().st_size if int8 else None}
    metrics["tokenizer_bytes"] = tokenizer_file.stat().st_size  # shipped beside the model: the download is both

    # Check 3 (its reference): golden strings, run one at a time through the model that ships.
    longest_test_text = max(test_texts, key=len)
    golden_texts = golden.golden_texts(test_texts, settings.golden_size, longest_test_text)
    golden.write_golden(partial / LAYOUT.golden, golden.golden_rows(golden_texts, inputs, onnx_session(partial / LAYOUT.model)))

    shutil.copyfile(tokenizer_file, partial / LAYOUT.tokenizer)
    write_json_atomic(partial / LAYOUT.labels, list(labels))
    manifest = {
        "labels": list(labels),
        "preprocessing": {"lowercase": spec.lowercase, "digits_to_zero": spec.digits_to_zero, "max_length": spec.max_length,
                          "min_length": spec.min_length, "pad_id": spec.pad_id},
        "tokenizer": {"file": LAYOUT.tokenizer, "type": "sentencepiece", "add_bos": False, "add_eos": False},
        "model": {
            "file": LAYOUT.model, "precision": "int8" if int8 else "fp32", "opset": opset, "architecture": architecture,
            "params": sum(p.numel() for p in model.parameters()),
            "inputs": [{"name": INPUT_NAME, "dtype": "int64", "shape": INPUT_AXES}],
            "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": OUTPUT_AXES}],
        },
        "metrics": metrics,
        "examples": _examples(test_texts, labels_array, shipped_logits.argmax(1), num_labels),
        "versions": _versions(),
    }
    return write_manifest(partial, manifest)


def _int8_model(fp32_path: Path, fp32_session, work: Path, inputs: StudentInput, num_labels: int, calibration_texts,
                check_texts, fp32_test_logits, test_batches, test_labels) -> tuple[Path | None, dict, str | None]:
    """Quantize with each recipe in turn until one passes verify.judge_int8. Returns the int8 model that
    passed (None if none did), the record of every attempt for the metrics, and why none passed."""
    from gendistill.export import quantize, verify
    from gendistill.export.onnx_export import run_logits
    from gendistill.runtime.classifier import onnx_session

    confidence = 1 - (1 - verify.INT8_CONFIDENCE) / len(quantize.RECIPES)
    record = {"texts": len(check_texts), "min_texts": verify.min_check_texts(confidence), "limit": verify.MAX_INT8_DISAGREEMENT,
              "confidence": confidence, "recipe": None, "attempts": []}
    if len(check_texts) < record["min_texts"]:
        return None, record, (f"only {len(check_texts)} texts were there to check int8 against fp32, too few to show "
                              f"that they agree (at least {record['min_texts']} are needed)")
    if not calibration_texts:
        raise GendistillError("There are no real texts to calibrate int8 on; the run's data/train.jsonl must not be empty.")
    calibration_batches, check_batches = _padded_batches(inputs, calibration_texts), _padded_batches(inputs, check_texts)
    fp32_check_logits = run_logits(fp32_session, check_batches)
    for recipe in quantize.RECIPES:
        int8_path = work / f"model.int8.{recipe.name}.onnx"
        quantize.quantize_int8(fp32_path, int8_path, calibration_batches, recipe)
        int8_session = onnx_session(int8_path)
        verify.check_io(int8_session, num_labels, "int8")
        attempt = verify.judge_int8(fp32_check_logits, run_logits(int8_session, check_batches), fp32_test_logits,
                                    run_logits(int8_session, test_batches), test_labels, confidence)
        record["attempts"].append({"recipe": recipe.name, **attempt})
        if attempt["passed"]:
            record["recipe"] = recipe.name
            return int8_path, record, None
    best = min(record["attempts"], key=lambda attempt: attempt["disagreements"])
    reason = verify.refusal_reason(best, len(check_texts), confidence)
    return None, record, f"{reason} with the best of its {len(quantize.RECIPES)} recipes ({best['recipe']})"


def _examples(test_texts: list[str], test_labels: np.ndarray, predicted: np.ndarray, num_labels: int) -> list[str]:
    """One short real test text per label that the shipped model gets right: demo apps show these."""
    examples = []
    for label in range(num_labels):
        right = [i for i in np.flatnonzero((test_labels == label) & (predicted == label)) if 4 <= len(test_texts[i].split()) <= 16]
        if right:
            examples.append(min((test_texts[i] for i in right), key=lambda t: (abs(len(t.split()) - 9), t)))
    return examples


def _padded_batches(inputs: StudentInput, texts: list[str]) -> list[np.ndarray]:
    ids = inputs.encode(texts)
    return [inputs.pad(ids[i : i + BATCH_SIZE]) for i in range(0, len(ids), BATCH_SIZE)]


def _write_mobile(partial: Path, work: Path, test_batches: list[np.ndarray]) -> float:
    """Convert model.onnx to model.ort plus the operator/type config a reduced mobile build needs; check it."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from gendistill.export.onnx_export import run_logits
    from gendistill.export.verify import check_mobile_against_onnx
    from gendistill.runtime.classifier import onnx_session

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
    return check_mobile_against_onnx(run_logits(onnx_session(partial / LAYOUT.model), test_batches),
                                     run_logits(onnx_session(partial / LAYOUT.model_ort), test_batches))


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
