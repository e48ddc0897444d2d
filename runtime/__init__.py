"""gendistill runtime: load a bundle and classify text with numpy + onnxruntime + sentencepiece.

Importing it never imports torch, transformers, onnx or click (a test checks this in a fresh interpreter);
onnxruntime and sentencepiece are imported only when a bundle is loaded.
"""

from gendistill.runtime.classifier import Classifier
from gendistill.runtime.errors import GendistillError

__all__ = ["Classifier", "GendistillError"]
