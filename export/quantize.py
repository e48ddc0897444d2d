"""fp32 ONNX -> int8 ONNX by static QDQ quantization, calibrated on real texts.

Static (calibrated) QDQ with per-channel weights, not dynamic quantization: dynamic quantization turns
Conv into ConvInteger, which measured 3-4x slower than fp32 for a Kim-CNN, while static QDQ was ~3x
faster. Calibrating on real training texts rather than random ids kept int8 closer to fp32 (argmax
agreement 0.992 against 0.988 for a Res-CNN).

Activations are uint8 and weights int8 (U8S8). Measured on the 2-vCPU AVX-512 VNNI build machine,
1 thread, demo-sized Kim-CNN (921k params) at 64 tokens: fp32 0.18 ms, U8S8 0.067 ms, S8S8 (the
quantizer's default) 0.31 ms, i.e. slower than fp32; ResCNN alike. Agreement with fp32 was the same.
The weights use 7 of their 8 bits (`reduce_range`): on x86 CPUs without VNNI (AVX2 only, an AMD EPYC here)
onnxruntime's U8S8 kernels add pairs of products in 16 bits, which saturate with full-range weights, and the
same bundle then gave probabilities 0.03 away from the browser's (which computes exactly) on such a machine;
with 7-bit weights no pair can overflow, so every CPU and the browser compute the same int8 model.

When the int8 model fails its checks against fp32, the export tries the next of `RECIPES`. Measured on
12 students (Kim-CNN and Res-CNN, 100 filters/channels, trained on 100 labeled texts of rotten-tomatoes
or 120 of bbc-news' first 3 classes, 3 seeds each), disagreements with fp32 on 3000 (rotten-tomatoes)
or 1184 (bbc-news) held-out texts, summed over the 12: all-int8 285; fp32-classifier 203 (fewer in 9
students, more in 2); fp32-classifier-per-tensor 189 (fewer than fp32-classifier in 8, more in 3).
Most flips are near-ties, and the classifier's uint8 output has only 256 levels over the whole logit
range. Batch-1 latency and file size stayed within 10% of all-int8's. What did not help: Percentile
calibration (291), Entropy calibration (285, the same flips), excluding the mask multiplications (285),
and, on one rotten-tomatoes student of each architecture, 4x more calibration texts (33 -> 33 and 30)
or the embedding in fp32 (33 -> 35 and 35, and a file 2.5x larger).

The last recipe, `int8-weights`, quantizes weights only and leaves every computation in fp32
(`weight_only_int8`): the subword tables with one scale per row, the convolution kernels with one scale per
output channel. The file shrinks as much as with the recipes above; the arithmetic is fp32's, so it agrees with
fp32 where calibrated int8 activations do not. It was first made for the static student (a weighted mean of its
vectors and a 13k-parameter MLP), which every calibrated recipe left 1.2-1.6% away from fp32, mostly through the
uint8 activation that feeds its MLP; it then held only the tables. Kim-CNNs fail the calibrated recipes too (a
third of the benchmark's students did): with their kernels in fp32 they shipped 1.70 MB instead of 1.32, over the
1.5 MB target, so the kernels went int8 too.

A bigru student's GRU nodes are outside onnxruntime's QDQ quantizer: every recipe stores their weights in int8 with
one scale per gate row (dequantized when the session loads, as the kernels above) and runs the GRU in fp32.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gendistill.export.onnx_export import INPUT_NAME, OUTPUT_NAME


@dataclass(frozen=True)
class Recipe:
    """One way to quantize the student."""

    name: str
    per_channel: bool = True
    """One weight scale per output channel (False: one per tensor)."""
    fp32_classifier: bool = False
    """Leave the layer that writes the logits in fp32, so near-tied logits are not rounded together."""
    weights_only: bool = False
    """Only weights in int8 (tables per row, convolution kernels per output channel), dequantized; fp32 arithmetic."""


RECIPES = (
    Recipe("all-int8"),
    Recipe("fp32-classifier", fp32_classifier=True),
    Recipe("fp32-classifier-per-tensor", per_channel=False, fp32_classifier=True),
    Recipe("int8-weights", weights_only=True),
)
"""What the export tries, in order, until an int8 model passes its checks (see the module docstring)."""


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_batches: list[np.ndarray], recipe: Recipe) -> None:
    """Write the int8 QDQ version of `fp32_path` made by `recipe`, with activation ranges measured on `calibration_batches`."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class PaddedBatches(CalibrationDataReader):
        """Feeds the calibration texts as padded batches: one batch per call is much faster than one text."""

        def __init__(self):
            self._batches = iter(calibration_batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    if recipe.weights_only:
        shutil.copyfile(fp32_path, int8_path)
        weight_only_int8(int8_path)
        return
    with tempfile.TemporaryDirectory(prefix="gendistill-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Symbolic shape inference crashes on the Kim-CNN graph (_infer_Concat); ONNX shape inference
        # and the graph optimisation are enough here.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = []
        if recipe.fp32_classifier:
            excluded = [node.name for node in onnx.load(str(prepared)).graph.node if OUTPUT_NAME in node.output]
        quantize_static(
            str(prepared), str(int8_path), PaddedBatches(),
            quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel, nodes_to_exclude=excluded,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
        )
    model = onnx.load(str(int8_path))
    if any(node.op_type == "GRU" for node in model.graph.node):
        _int8_gru_weights(model.graph, {init.name: init for init in model.graph.initializer})
        onnx.save(model, str(int8_path))


def _table_lookups(graph) -> list:
    """The Gather nodes that look rows up in a 2-D initializer with 8+ columns: the subword vector tables."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}

    def axis(node) -> int:
        return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 0)

    return [node for node in graph.node if node.op_type == "Gather" and len(shapes.get(node.input[0], ())) == 2
            and shapes[node.input[0]][1] >= 8 and axis(node) == 0]


def _symmetric_int8(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and fp32 scales, one scale per slice along the first axis (a table's row, a kernel's output
    channel), shaped to broadcast against `weights`: weights ≈ values * scales."""
    weights = weights.astype(np.float32)
    scales = np.abs(weights.reshape(len(weights), -1)).max(1) / 127.0
    scales[scales == 0] = 1.0
    scales = scales.reshape((-1,) + (1,) * (weights.ndim - 1)).astype(np.float32)
    return np.round(weights / scales).astype(np.int8), scales


def weight_only_int8(path: str | Path) -> None:
    """Rewrite `path` in place: each subword table becomes int8 with one fp32 scale per row, each convolution
    kernel int8 with one scale per output channel, a GRU's weights with one per gate row; every computation stays fp32.

    Written here because onnxruntime's quantizer has no weight-only int8 for a lookup table (it quantizes a
    Gather's table as an activation, with one uint8 scale for all rows and the values after it in uint8 too) and
    quantizes a Conv's input whenever it quantizes its kernel. Symmetric, so the error of a weight is at most
    half a step of the largest entry of its row or channel.
    lookup(ids) = Gather(Cast(table_int8) * row_scales, ids), conv(x) = Conv(x, Cast(kernel_int8) * channel_scales):
    onnxruntime folds both into fp32 initializers when it loads the model, so a run does one lookup, as in fp32
    (dequantizing after the lookup, as this did before, took a second lookup and two more operations a run).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in _table_lookups(graph):
        values, scales = _symmetric_int8(numpy_helper.to_array(initializers[node.input[0]]))
        name, ids, out = node.input[0], node.input[1], node.output[0]
        graph.initializer.remove(initializers[name])
        graph.initializer.extend([numpy_helper.from_array(values, f"{name}_int8"), numpy_helper.from_array(scales, f"{name}_row_scale")])
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate([
            # "_per_row_" keeps clear of the quantizer's own names ("_scale", "_quantized", ...).
            helper.make_node("Cast", [f"{name}_int8"], [f"{name}_per_row_unscaled"], name=f"{node.name}_per_row_cast",
                             to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}_per_row_unscaled", f"{name}_row_scale"], [f"{name}_per_row_dequantized"],
                             name=f"{node.name}_per_row_dequantize"),
            helper.make_node("Gather", [f"{name}_per_row_dequantized", ids], [out], name=node.name, axis=0),
        ]):
            graph.node.insert(at + offset, new)
    for node in [n for n in graph.node if n.op_type == "Conv" and n.input[1] in initializers]:
        _int8_kernel(graph, initializers, node, 1)
    _int8_gru_weights(graph, initializers)
    onnx.save(model, str(path))


def _int8_kernel(graph, initializers: dict, node, index: int) -> None:
    """Store the weight initializer that feeds `node.input[index]` as int8 with one scale per slice of its first axis
    (a kernel's output channel, a GRU's gate row), dequantized by Cast and Mul in front of the node."""
    import onnx
    from onnx import helper, numpy_helper

    name = node.input[index]
    weights = numpy_helper.to_array(initializers[name])
    if node.op_type == "GRU":  # W and R are [directions, 3 x hidden, inputs]: one scale per gate row, not per direction
        values, scales = _symmetric_int8(weights.reshape(-1, weights.shape[-1]))
        values, scales = values.reshape(weights.shape), scales.reshape(weights.shape[:-1] + (1,))
    else:
        values, scales = _symmetric_int8(weights)
    graph.initializer.remove(initializers[name])
    graph.initializer.extend([numpy_helper.from_array(values, f"{name}_int8"), numpy_helper.from_array(scales, f"{name}_channel_scale")])
    at = list(graph.node).index(node)
    # Cast and Mul, not DequantizeLinear: onnxruntime folds constant Cast/Mul into an fp32 kernel when the session
    # loads (batch-1 as fast as fp32), but keeps a DequantizeLinear to run on every call (measured 1.3x slower).
    graph.node.insert(at, helper.make_node("Cast", [f"{name}_int8"], [f"{name}_per_channel_unscaled"], name=f"{node.name}_{index}_per_channel_cast",
                                           to=onnx.TensorProto.FLOAT))
    graph.node.insert(at + 1, helper.make_node("Mul", [f"{name}_per_channel_unscaled", f"{name}_channel_scale"], [f"{name}_per_channel"],
                                               name=f"{node.name}_{index}_per_channel_dequantize"))
    node.input[index] = f"{name}_per_channel"


def _int8_gru_weights(graph, initializers: dict) -> None:
    """A GRU's input and recurrent weights (W, R) in int8, arithmetic in fp32: onnxruntime's QDQ quantizer leaves a GRU
    node in fp32, where its weights would take a fifth of a bigru bundle."""
    for node in [n for n in graph.node if n.op_type == "GRU"]:
        for index in (1, 2):
            if node.input[index] in initializers:
                _int8_kernel(graph, initializers, node, index)
