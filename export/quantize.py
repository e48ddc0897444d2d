"""fp32 ONNX -> int8 ONNX by static QDQ quantization, calibrated on real texts.

Static (calibrated) QDQ with per-channel weights, not dynamic quantization: dynamic quantization turns
Conv into ConvInteger, which measured 3-4x slower than fp32 for a Kim-CNN, while static QDQ was ~3x
faster. Calibrating on real training texts rather than random ids kept int8 closer to fp32 (argmax
agreement 0.992 against 0.988 for a Res-CNN).

Activations are uint8 and weights int8 (U8S8). Measured on the 2-vCPU AVX-512 VNNI build machine,
1 thread, demo-sized Kim-CNN (921k params) at 64 tokens: fp32 0.18 ms, U8S8 0.067 ms, S8S8 (the
quantizer's default) 0.31 ms, i.e. slower than fp32; ResCNN alike. Agreement with fp32 was the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from gendistill.export.onnx_export import INPUT_NAME


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_batches: list[np.ndarray]) -> None:
    """Write the int8 QDQ version of `fp32_path`, with activation ranges measured on `calibration_batches`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class PaddedBatches(CalibrationDataReader):
        """Feeds the calibration texts as padded batches: one batch per call is much faster than one text."""

        def __init__(self):
            self._batches = iter(calibration_batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="gendistill-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Symbolic shape inference crashes on the Kim-CNN graph (_infer_Concat); ONNX shape inference
        # and the graph optimisation are enough here.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(int8_path), PaddedBatches(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
