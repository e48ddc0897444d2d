"""Export a trained student to a verified, int8-quantized ONNX bundle (see gendistill.runtime.bundle for the layout).

Imports only gendistill.runtime below it; the pipeline (gendistill.compressor) calls it.
"""
