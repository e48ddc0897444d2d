"""gendistill runtime: load a bundle and classify text with numpy + onnxruntime + sentencepiece.

Importing it never imports torch, transformers, onnx or click (a test checks this in a fresh interpreter).
"""

from runtime.errors import GendistillError

__all__ = ["GendistillError"]
