"""fp32 ONNX -> int8 ONNX by static QDQ quantization, calibrated on real texts.

Static (calibrated) QDQ with per-channel weights, not dynamic quantization: dynamic quantization turns
Conv into ConvInteger, which measured 3-4x slower than fp32 for a Kim-CNN, while static QDQ was ~3x
faster. Calibrating on real training texts rather than random ids kept int8 closer to fp32 (argmax
agreement 0.992 against 0.988 for a Res-CNN).

Activations are uint8 and weights int8 (U8S8). Measured on the 2-vCPU AVX-512 VNNI build machine,
1 thread, demo-sized Kim-CNN (921k params) at 64 tokens: fp32 0.18 ms, U8S8 0.067 ms, S8S8 (the
quantizer's default) 0.31 ms, i.e. slower than fp32; ResCNN alike. Agreement with fp32 was the same.

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

The last recipe, `int8-tables`, is for students whose table is nearly all there is (the static student,
a weighted mean of its vectors and a 13k-parameter MLP): every recipe above left a static student
distilled on 10,352 real texts 1.2-1.6% away from fp32, mostly through the uint8 activation that feeds its
MLP. `int8-tables` quantizes weights only, the subword table, with one scale per row (`per_row_tables`),
and leaves every computation in fp32: the file shrinks nearly as much, the arithmetic is fp32's. For a CNN
it is a fallback that keeps the size gain without the int8 convolutions' speed.
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
    tables_only: bool = False
    """Only the subword tables in int8, one scale per row (per vector), dequantized after the lookup; the rest fp32."""


RECIPES = (
    Recipe("all-int8"),
    Recipe("fp32-classifier", fp32_classifier=True),
    Recipe("fp32-classifier-per-tensor", per_channel=False, fp32_classifier=True),
    Recipe("int8-tables", tables_only=True),
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

    if recipe.tables_only:
        shutil.copyfile(fp32_path, int8_path)
        per_row_tables(int8_path)
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
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )


def _table_lookups(graph) -> list:
    """The Gather nodes that look rows up in a 2-D initializer with 8+ columns: the subword vector tables."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}

    def axis(node) -> int:
        return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 0)

    return [node for node in graph.node if node.op_type == "Gather" and len(shapes.get(node.input[0], ())) == 2
            and shapes[node.input[0]][1] >= 8 and axis(node) == 0]


def per_row_tables(path: str | Path) -> None:
    """Rewrite `path` in place: each subword table becomes int8 with one fp32 scale per row.

    Written here because onnxruntime's quantizer has no weight-only int8 for a lookup table: it quantizes
    a Gather's table as an activation, with one uint8 scale for all rows and the values after it in uint8
    too. Per row, each vector keeps its own range (symmetric, error at most half a step of its largest entry).
    lookup(ids) = Cast(Gather(table_int8, ids)) * Gather(scales, ids), the same values for every batch.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in _table_lookups(graph):
        table = numpy_helper.to_array(initializers[node.input[0]]).astype(np.float32)
        scales = np.abs(table).max(1, keepdims=True) / 127.0
        scales[scales == 0] = 1.0
        name, ids, out = node.input[0], node.input[1], node.output[0]
        graph.initializer.remove(initializers[name])
        graph.initializer.extend([numpy_helper.from_array(np.round(table / scales).astype(np.int8), f"{name}_int8"),
                                  numpy_helper.from_array(scales.astype(np.float32), f"{name}_row_scale")])
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate([
            # "_per_row_" keeps clear of the quantizer's own names ("_scale", "_quantized", ...).
            helper.make_node("Gather", [f"{name}_int8", ids], [f"{out}_per_row_int8"], name=f"{node.name}_per_row_int8", axis=0),
            helper.make_node("Cast", [f"{out}_per_row_int8"], [f"{out}_per_row_unscaled"], name=f"{node.name}_per_row_cast",
                             to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{out}_per_row_scale"], name=f"{node.name}_per_row_scale", axis=0),
            helper.make_node("Mul", [f"{out}_per_row_unscaled", f"{out}_per_row_scale"], [out], name=f"{node.name}_per_row_dequantize"),
        ]):
            graph.node.insert(at + offset, new)
    onnx.save(model, str(path))
