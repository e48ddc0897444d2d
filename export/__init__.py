"""Export a trained student to a verified, int8-quantized ONNX bundle (see runtime.bundle for the layout)."""
