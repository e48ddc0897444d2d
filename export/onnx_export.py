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

    if hasattr(model, "onnx_graph"):  # a student that writes its own graph (the BiGRU: see `bigru_graph`)
        graph = model.onnx_graph()
        if opset != opset_of(graph):
            graph = onnx.version_converter.convert_version(graph, opset)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(path))
        return opset_of(graph)
    if hasattr(model, "onnx_module"):  # a student with a leaner equivalent for the graph (the static one: `_StaticGraph`)
        model = model.onnx_module()
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


def bigru_graph(model):
    """The BiGRU student as ONNX, written from its weights: one bidirectional GRU node whose `sequence_lens` are the
    texts' lengths, so onnxruntime reads each text backwards from its own last piece and leaves padding out.

    Written here rather than by torch's exporter because a PyTorch GRU has no per-text lengths (short of packed
    sequences, which do not export): the model reverses each text within its length by gathers instead, and the
    traced graph (two GRU nodes, the gathers, the index arithmetic: 93 nodes after int8, against 38) took 1.15-1.4x
    this one's batch-1 time at 16-128 pieces in onnxruntime (default size, int8, 1 thread;
    benchmarks/student/bigru_graph_latency.py). The
    export checks this graph's logits against the PyTorch model's on real padded batches, as every architecture's.
    """
    from onnx import TensorProto, helper, numpy_helper

    def array(tensor):
        return tensor.detach().cpu().numpy().astype(np.float32)

    hidden = model.forward_gru.hidden_size
    # PyTorch stacks a GRU's gates as (reset, update, new), ONNX as (update, reset, hidden); linear_before_reset=1 is
    # PyTorch's formula (the reset gate scales the recurrent term after its matrix product, bias included).
    order = np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]
    grus = (model.forward_gru, model.backward_gru)
    weights = {
        "embedding": array(model.embedding.weight),
        "gru_W": np.stack([array(g.weight_ih_l0)[order] for g in grus]),
        "gru_R": np.stack([array(g.weight_hh_l0)[order] for g in grus]),
        "gru_B": np.stack([np.concatenate([array(g.bias_ih_l0)[order], array(g.bias_hh_l0)[order]]) for g in grus]),
        "classifier_weight": array(model.classifier.weight),
        "classifier_bias": array(model.classifier.bias),
        "pad_id": np.array(model.pad_id, dtype=np.int64),
        "one": np.array(1.0, dtype=np.float32),
        "time_axis": np.array([0], dtype=np.int64),
        "sequence_axis": np.array([1], dtype=np.int64),
        "mask_axes": np.array([1, 3], dtype=np.int64),
        "features_shape": np.array([0, -1], dtype=np.int64),
    }
    def node(op_type, inputs, outputs, **attributes):
        return helper.make_node(op_type, inputs, outputs, name=outputs[0], **attributes)

    nodes = [
        node("Equal", [INPUT_NAME, "pad_id"], ["is_pad"]),
        node("Not", ["is_pad"], ["is_piece"]),
        node("Cast", ["is_piece"], ["mask"], to=TensorProto.FLOAT),  # [batch, sequence]
        node("Cast", ["is_piece"], ["piece_count"], to=TensorProto.INT32),
        node("ReduceSum", ["piece_count", "sequence_axis"], ["lengths"], keepdims=0),  # [batch]
        node("Transpose", [INPUT_NAME], ["ids_by_time"], perm=[1, 0]),
        node("Gather", ["embedding", "ids_by_time"], ["vectors"]),  # [sequence, batch, embed]
        node("GRU", ["vectors", "gru_W", "gru_R", "gru_B", "lengths"], ["states"], hidden_size=hidden,
             direction="bidirectional", linear_before_reset=1),  # [sequence, 2, batch, hidden], 0 past each length
        # As in the model: states lie in (-1, 1), so shifted by 1 they are > 0 at real positions and 0 at pads.
        node("Add", ["states", "one"], ["shifted"]),
        node("Transpose", ["mask"], ["mask_by_time"], perm=[1, 0]),
        node("Unsqueeze", ["mask_by_time", "mask_axes"], ["state_mask"]),  # [sequence, 1, batch, 1]
        node("Mul", ["shifted", "state_mask"], ["masked"]),
        node("ReduceMax", ["masked", "time_axis"], ["pooled"], keepdims=0),  # [2, batch, hidden]
        node("Transpose", ["pooled"], ["pooled_by_text"], perm=[1, 0, 2]),
        node("Reshape", ["pooled_by_text", "features_shape"], ["features"]),  # [batch, forward then backward]
        node("Gemm", ["features", "classifier_weight", "classifier_bias"], [OUTPUT_NAME], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "bigru",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, INPUT_AXES)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [OUTPUT_AXES[0], model.classifier.out_features])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    # IR version 8 is what opset 18 needs; a newer onnx package would otherwise write its own, newer than some runtimes read.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="gendistill", ir_version=8)


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
