"""Export a trained student to a verified ONNX bundle, int8 when it keeps fp32's labels (layout: gendistill.runtime.bundle).

Imports only gendistill.runtime below it; the pipeline (gendistill.compressor) calls it.
"""
