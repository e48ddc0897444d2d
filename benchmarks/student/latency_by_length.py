"""Batch-1 latency of the student architectures by text length, side by side: onnxruntime, 1 thread, int8 (all-int8
recipe, calibrated on random ids; latency does not depend on the weights' values), default sizes (8,000 pieces x 100
dims; Kim-CNN 100 filters of widths 3-5; bigru 64 units per direction, the default until 2026-12-03, and bigru-32, the default since).
Alternating rounds, median of the rounds.

    python benchmarks/student/latency_by_length.py > benchmarks/student/latency-by-length.json

Light (about a minute); still, run nothing heavy beside it.
"""

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.distill import DistillSettings, student_shape
from gendistill.compressor.student import StudentConfig, build_student
from gendistill.compressor.teacher_onnx import VNNI_FLAGS, cpu_model_and_flags
from gendistill.export.onnx_export import export_fp32
from gendistill.export.quantize import RECIPES, quantize_int8
from gendistill.runtime.classifier import onnx_session

LENGTHS = (16, 32, 64, 128, 256, 512)
STUDENTS = {"kim-cnn": DistillSettings(architecture="kim-cnn"), "bigru": DistillSettings(architecture="bigru", gru_units=64),
            "bigru-32": DistillSettings(architecture="bigru", gru_units=32)}
ROUNDS, CALLS = 7, 200

torch.manual_seed(0)
rng = np.random.default_rng(0)
sessions = {}
with tempfile.TemporaryDirectory() as work:
    for name, settings in STUDENTS.items():
        config = StudentConfig(architecture=settings.architecture, **student_shape(settings))
        fp32, int8 = Path(work) / f"{name}.onnx", Path(work) / f"{name}-int8.onnx"
        export_fp32(build_student(config).eval(), config.min_length, fp32, opset=18)
        calibration = [rng.integers(1, config.vocab_size, (32, length)) for length in (16, 32, 64)]
        quantize_int8(fp32, int8, calibration, RECIPES[0])
        sessions[name] = onnx_session(int8)  # the runtime's own: 1 thread

rounds = {(name, n): [] for name in STUDENTS for n in LENGTHS}
for _ in range(ROUNDS):
    for length in LENGTHS:
        ids = rng.integers(1, 8000, (1, length))
        for name, session in sessions.items():
            for _ in range(20):
                session.run(None, {"input_ids": ids})
            started = time.perf_counter()
            for _ in range(CALLS):
                session.run(None, {"input_ids": ids})
            rounds[(name, length)].append(1000 * (time.perf_counter() - started) / CALLS)
cpu, flags = cpu_model_and_flags()
result = {"cpu": cpu, "vnni": bool(flags & VNNI_FLAGS), "threads": 1, "rounds": ROUNDS, "calls_per_round": CALLS, "median_ms": {
    a: {str(n): round(statistics.median(rounds[(a, n)]), 4) for n in LENGTHS} for a in STUDENTS}}
for name in ("bigru", "bigru-32"):
    result[f"{name}_over_kim_cnn"] = {str(n): round(result["median_ms"][name][str(n)] / result["median_ms"]["kim-cnn"][str(n)], 2) for n in LENGTHS}
print(json.dumps(result, indent=1))
