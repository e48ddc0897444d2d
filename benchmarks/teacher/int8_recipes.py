"""The int8 teacher recipes of compressor/teacher_onnx.py side by side on a finished run's teacher.

Exports the run's calibrated teacher to ONNX once, quantizes it by each recipe (and with every weight MatMul
in int8, for reference), and compares each with the torch teacher on the run's dev + test texts (the accuracy change and sign test
annotate's check uses, and argmax agreement) and on 640 of its synthetic texts (agreement, and
texts/s with 2 threads, batches of 64 sorted by length, as annotate runs).

    python benchmarks/teacher/int8_recipes.py runs/demo-new > benchmarks/teacher/int8-recipes.json

Heavy (about 8 minutes on 2 cores): run nothing else beside it.
"""

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.rundir import load_split
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits
from gendistill.compressor.teacher_onnx import RECIPES, OnnxTeacher, export_teacher, quantize_teacher
from gendistill.export.verify import accuracy_loss

run = Path(sys.argv[1])
model, tokenizer = load_teacher(run)
texts = load_split(run, "dev")[0] + load_split(run, "test")[0]
y = np.array(load_split(run, "dev")[1] + load_split(run, "test")[1])
synthetic = load_synthetic(run)[:640]
reference = teacher_logits(model, tokenizer, texts, 128)
tick = time.time()
reference_synthetic = teacher_logits(model, tokenizer, synthetic, 128)
results = {"run_dir": str(run), "labeled_texts": len(texts), "synthetic_texts": len(synthetic),
           "torch": {"accuracy": float((reference.argmax(1) == y).mean()), "synthetic_texts_per_second": len(synthetic) / (time.time() - tick)}}
RECIPES["all-int8"] = None
with tempfile.TemporaryDirectory() as work:
    export_teacher(model, Path(work) / "teacher.onnx")
    for recipe, pattern in RECIPES.items():
        path = Path(work) / f"{recipe}.onnx"
        if pattern is None:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.disable(logging.WARNING)
            quantize_dynamic(str(Path(work) / "teacher.onnx"), str(path), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
            logging.disable(logging.NOTSET)
        else:
            quantize_teacher(Path(work) / "teacher.onnx", path, recipe)
        engine = OnnxTeacher(path, tokenizer, torch.get_num_threads())
        labeled = engine.logits(texts, 128)
        tick = time.time()
        on_synthetic = engine.logits(synthetic, 128)
        seconds = time.time() - tick
        loss = accuracy_loss(reference.argmax(1) == y, labeled.argmax(1) == y)  # annotate's check
        results[recipe] = {"accuracy_loss": loss["loss"], "texts_worse": loss["worse"], "texts_better": loss["better"],
                           "loss_p_value": loss["p_value"], "passed": not loss["refused"],
                           "labeled_agreement": float((labeled.argmax(1) == reference.argmax(1)).mean()),
                           "synthetic_agreement": float((on_synthetic.argmax(1) == reference_synthetic.argmax(1)).mean()),
                           "synthetic_texts_per_second": len(synthetic) / seconds}
        print(recipe, results[recipe], file=sys.stderr, flush=True)
json.dump(results, sys.stdout, indent=1)
