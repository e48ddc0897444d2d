"""PyTorch student -> fp32 ONNX graph.

The graph takes `input_ids` int64 [batch, sequence] and returns `logits` float32 [batch, num_labels],
both axes dynamic and named, in one file (no external data), so any onnxruntime can load it as is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

INPUT_NAME = "input_ids"
OUTPUT_NAME = "logits"
# Names the manifest documents for the dynamic axes; the exporter writes the first two into the graph.
INPUT_AXES = ["batch", "sequence"]
OUTPUT_AXES = ["batch", "num_labels"]


def export_fp32(model, min_length: int, path: str | Path, opset: int) -> int:
    """Write `model` as an fp32 ONNX file; returns the opset actually written.

    The dynamo exporter is the default in torch 2.13 (the TorchScript one is deprecated); both gave
    logits within 1.2e-6 of PyTorch for these CNNs.
    The example input is longer than the widest kernel and has batch 2, so neither axis gets
    specialised to a constant while tracing.
    """
    import onnx
    import torch
    from torch.export import Dim

    # torch 2.13: for dynamic shapes the exporter swaps in a GRU decomposition it can keep as one ONNX GRU node, but
    # through an operator dispatch cache it leaves filled when it swaps back: from the second export in a process on,
    # a GRU student was unrolled over the example's length and that axis fixed. Emptying the cache first avoids it.
    torch.ops.aten.gru.input._dispatch_cache.clear()
    example = torch.full((2, max(16, min_length + 1)), 1, dtype=torch.int64)
    dynamic_shapes = {INPUT_NAME: {0: Dim(INPUT_AXES[0]), 1: Dim(INPUT_AXES[1])}}
    # The exporter reports progress and version notes through print, warnings and logging; the export
    # is checked right below, so none of that is useful to a user and library code must not print.
    with _quiet():
        program = torch.onnx.export(
            model.eval(), (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
        program.save(str(path), external_data=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    return opset_of(graph)


def opset_of(graph) -> int:
    return next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))


def run_logits(onnx_session, batches: list[np.ndarray]) -> np.ndarray:
    """Logits for padded int64 batches, concatenated in order."""
    outputs = [onnx_session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0] for batch in batches]
    return np.concatenate(outputs)


# The exporter and the ONNX IR passes it runs log each step at INFO.
_EXPORTER_LOGGERS = ("torch", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)
