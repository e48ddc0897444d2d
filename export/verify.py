"""The checks an export must pass before it is written as done, and the latency it reports.

1. fp32 ONNX vs PyTorch on the real test texts: input/output names, dtypes, shapes, max |logit diff|.
2. int8 vs fp32 on the same texts: argmax agreement and the test accuracy of each.
Each check returns its figures and raises GendistillError (one sentence) when a limit is broken.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gendistill.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from gendistill.runtime.classifier import onnx_session
from gendistill.runtime.errors import GendistillError

MAX_FP32_DIFF = 1e-4
"""fp32 ONNX must give PyTorch's logits to within this (float rounding, not a different model)."""
MIN_INT8_AGREEMENT = 0.99
"""int8 must pick the same label as fp32 on at least this share of the test texts."""
MAX_INT8_ACCURACY_LOSS = 0.005
"""int8 test accuracy may be at most this far (0.5 points) below fp32's."""
MAX_MOBILE_DIFF = 1e-3
"""model.ort runs the same graph with its optimisations fixed at conversion; allow rounding only."""


def check_io(session, num_labels: int, what: str) -> None:
    """The graph takes `input_ids` int64 [batch, sequence] and returns `logits` float32 [batch, num_labels]."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    found = ([(i.name, i.type, len(i.shape)) for i in inputs], [(o.name, o.type, len(o.shape)) for o in outputs])
    wanted = ([(INPUT_NAME, "tensor(int64)", 2)], [(OUTPUT_NAME, "tensor(float)", 2)])
    if found != wanted:
        raise GendistillError(f"The {what} model's inputs and outputs are {found}, not {wanted}; the export is broken, so no bundle was written.")
    dynamic = inputs[0].shape
    if not all(isinstance(axis, str) for axis in dynamic) or outputs[0].shape[1] not in (num_labels, "num_labels"):
        raise GendistillError(
            f"The {what} model has input shape {dynamic} and output shape {outputs[0].shape}, not dynamic "
            f"[batch, sequence] -> [batch, {num_labels}]; the export is broken, so no bundle was written."
        )


def check_fp32_against_torch(torch_logits: np.ndarray, fp32_logits: np.ndarray) -> float:
    """Max |logit diff| between the fp32 ONNX model and PyTorch; raises if not under MAX_FP32_DIFF."""
    if fp32_logits.shape != torch_logits.shape:
        raise GendistillError(
            f"The fp32 ONNX model returned logits of shape {fp32_logits.shape} where PyTorch gives {torch_logits.shape}; the export is broken, so no bundle was written."
        )
    diff = float(np.abs(fp32_logits.astype(np.float64) - torch_logits).max()) if torch_logits.size else 0.0
    if not diff < MAX_FP32_DIFF:  # `not <` also refuses NaN
        raise GendistillError(
            f"The fp32 ONNX model's logits differ from PyTorch's by up to {diff:.2e} (limit {MAX_FP32_DIFF:.0e}) on the test texts, "
            "so the export is refused and no bundle was written; this is a bug, please report it with the run directory."
        )
    return diff


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def check_int8_against_fp32(fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray) -> dict:
    """Agreement and accuracies; raises if int8 agrees too rarely or loses too much accuracy."""
    agreement = float((fp32_logits.argmax(axis=1) == int8_logits.argmax(axis=1)).mean())
    fp32_accuracy, int8_accuracy = accuracy(fp32_logits, labels), accuracy(int8_logits, labels)
    if agreement < MIN_INT8_AGREEMENT:
        raise GendistillError(
            f"The int8 model picks the fp32 model's label on only {agreement:.1%} of the {len(labels)} test texts "
            f"(at least {MIN_INT8_AGREEMENT:.0%} needed), so no bundle was written; export with --quantize none to ship fp32."
        )
    if int8_accuracy < fp32_accuracy - MAX_INT8_ACCURACY_LOSS - 1e-12:
        raise GendistillError(
            f"The int8 model's test accuracy {int8_accuracy:.2%} is more than {MAX_INT8_ACCURACY_LOSS:.1%} below fp32's "
            f"{fp32_accuracy:.2%}, so no bundle was written; export with --quantize none to ship fp32."
        )
    return {"int8_vs_fp32_agreement": agreement, "fp32_test_accuracy": fp32_accuracy, "int8_test_accuracy": int8_accuracy}


def check_mobile_against_onnx(onnx_logits: np.ndarray, ort_logits: np.ndarray) -> float:
    diff = float(np.abs(ort_logits.astype(np.float64) - onnx_logits).max()) if onnx_logits.size else 0.0
    same_labels = bool((onnx_logits.argmax(axis=1) == ort_logits.argmax(axis=1)).all())
    if not (diff < MAX_MOBILE_DIFF and same_labels):
        raise GendistillError(
            f"model.ort's logits differ from model.onnx's by up to {diff:.2e} (limit {MAX_MOBILE_DIFF:.0e}) on the test texts, "
            "so no bundle was written; export without --mobile and report this with the run directory."
        )
    return diff


def batch1_latency_ms(model_path, single_inputs: list[np.ndarray], threads: int, runs: int = 300) -> float:
    """Median wall time (ms) of one batch-1 inference in onnxruntime, cycling over real test inputs."""
    session = onnx_session(model_path, threads=threads)
    feeds = [{INPUT_NAME: ids} for ids in single_inputs]
    for feed in feeds[:20]:  # warm-up: first runs allocate buffers
        session.run([OUTPUT_NAME], feed)
    times = []
    for i in range(runs):
        feed = feeds[i % len(feeds)]
        started = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
