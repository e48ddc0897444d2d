"""The teacher through onnxruntime, for annotating 10,000+ texts on CPU.

The calibrated teacher module (encoder + pooling + head, compressor/encoder.py) is exported once with
torch's TorchScript-based exporter (opset 17, dynamic batch and length), then quantized to int8 with
onnxruntime's dynamic quantization: per-channel int8 weights, activations quantized on the fly.

Two recipes, tried in order (`RECIPES`) until one passes annotate's check against the torch teacher (accuracy
on dev + test, compressor/annotate.py):
- `ffn-output-fp32`: every weight MatMul in int8 except the feed-forward output projections
  (`layer.N/output/dense`), whose inputs (after GELU) carry outliers near 100 against a median of 0.09:
  in int8 they broke all-mpnet-base-v2 (cosine 0.71 to fp32, argmax agreement 86%).
- `ffn-fp32`: the whole feed-forward block (intermediate and output projections) in fp32 too.
Measured on the demo's *fine-tuned* all-mpnet-base-v2 (`python benchmarks/teacher/int8_recipes.py runs/demo-new`,
benchmarks/teacher/int8-recipes.json), 2 threads, 640 synthetic texts: torch fp32 about 31 texts/s;
ffn-output-fp32 about 55 (accuracy on the 400 train + dev texts -1.0 point, 8 flips, which the check of then
refused); ffn-fp32 about 41 (-0.25).
On the frozen encoder, ffn-output-fp32 alone had passed (59 texts/s, agreement 97.5%).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gendistill.compressor.encoder import batched

RECIPES = {
    "ffn-output-fp32": re.compile(r"layer\.\d+/output/dense/MatMul$"),
    "ffn-fp32": re.compile(r"layer\.\d+/(output|intermediate)/dense/MatMul$"),
}
"""recipe name -> the MatMuls (by node name) it keeps in fp32; tried in this order."""


def export_teacher(model, path: Path) -> None:
    import warnings

    import torch

    model = model.cpu().eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about Python conditions it freezes (transformers' mask helpers); they hold for
        # every input here (the mask is always as long as the input). Users need not read them.
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) gives a graph onnxruntime's quantizer handles; its
        # output matched torch (cosine 1.0) on all-mpnet-base-v2.
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)


def quantize_teacher(fp32_path: Path, int8_path: Path, recipe: str = "ffn-output-fp32") -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load(str(fp32_path), load_external_data=False).graph.node
    keep_fp32 = [n.name for n in nodes if n.op_type == "MatMul" and RECIPES[recipe].search(n.name)]
    # The quantizer logs a suggestion to pre-process the graph on the root logger; dynamic quantization of
    # MatMuls gains nothing from it here, and a user need not read it.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), per_channel=True, reduce_range=saturates_int8(), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32)
    finally:
        logging.disable(logging.NOTSET)


def saturates_int8() -> bool:
    """True on x86 CPUs without VNNI (AVX2 only), where onnxruntime's U8S8 kernels add pairs of products in 16 bits and
    saturate with 8-bit weights: there the teacher is quantized with 7-bit weights (`reduce_range`). Measured on the demo's
    teacher on an AMD EPYC without VNNI, 256 synthetic texts: argmax agreement with torch 46.9% with 8-bit weights, 94.1%
    with 7-bit (mean probability difference 0.36 and 0.043). Elsewhere 8 bits, as measured in the docstring above.
    The teacher runs only where it annotates; the student's bundle, which runs anywhere, always uses 7 bits."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not VNNI_FLAGS & cpu_model_and_flags()[1]  # no flags to read: 7 bits, safe everywhere


VNNI_FLAGS = {"avx512_vnni", "avx_vnni"}
"""/proc/cpuinfo flags of x86's int8 dot-product instructions (VNNI), with which onnxruntime's int8 kernels are exact."""


def cpu_model_and_flags() -> tuple[str | None, set[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo; (None, empty) where there is none (not Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None, set()

    def field(name):
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")
    return field("model name") or None, set(field("flags").split())


class OnnxTeacher:
    """Calibrated logits from an exported teacher, batched by length like the torch path."""

    def __init__(self, path: Path, tokenizer, threads: int):
        from gendistill.runtime.classifier import onnx_session

        self.session, self.tokenizer = onnx_session(path, threads), tokenizer
        self.width = self.session.get_outputs()[0].shape[1]  # the number of labels, fixed at export

    def logits(self, texts: list[str], max_length: int, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
        def compute(batch):
            encoded = self.tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="np")
            return self.session.run(["logits"], {"input_ids": encoded["input_ids"].astype(np.int64),
                                                 "attention_mask": encoded["attention_mask"].astype(np.int64)})[0]

        return batched(texts, batch_size, self.width, compute, desc)
