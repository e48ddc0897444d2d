"""Batch-1 time of the bigru student's two ONNX graphs, side by side: the one torch's exporter traced until 0aaf5ec (two
GRU nodes, gathers that reverse each text within its length, the index arithmetic) and the one `bigru_graph` writes
now (one bidirectional GRU fed the texts' lengths), with the Kim-CNN for scale. Same weights (random: latency does not
depend on their values), default sizes (the bigru's 64 units a direction, the default when this was measured), int8 by the all-int8 and int8-weights recipes, onnxruntime on 1 thread,
9 alternating rounds, median. The traced graph's exporter is read from git history, so run it inside the repository:

    python benchmarks/student/bigru_graph_latency.py > benchmarks/student/bigru-graph-latency.json

Light (a few minutes); run nothing heavy beside it.
"""

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from gendistill.compressor.distill import DistillSettings, student_shape
from gendistill.compressor.student import StudentConfig, build_student
from gendistill.compressor.teacher_onnx import cpu_model_and_flags
from gendistill.export.onnx_export import export_fp32
from gendistill.export.quantize import RECIPES, quantize_int8
from gendistill.runtime.classifier import onnx_session

TRACED_AT = "014f166"  # the last commit whose export traced the bigru with torch's exporter
LENGTHS = (16, 27, 64, 128)  # 27: rotten-tomatoes' median test snippet in pieces
ROUNDS, CALLS = 9, 300

root = Path(__file__).resolve().parents[2]
work = Path(tempfile.mkdtemp(prefix="bigru-graph-"))
source = subprocess.run(["git", "-C", str(root), "show", f"{TRACED_AT}:export/onnx_export.py"], capture_output=True, text=True, check=True).stdout
(work / "traced_export.py").write_text(source)
spec = importlib.util.spec_from_file_location("traced_export", work / "traced_export.py")
traced_export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(traced_export)

torch.manual_seed(0)
rng = np.random.default_rng(0)
bigru = build_student(StudentConfig(architecture="bigru", **student_shape(DistillSettings(architecture="bigru", gru_units=64)))).eval()
kim = build_student(StudentConfig(architecture="kim-cnn")).eval()
traced_export.export_fp32(bigru, 5, work / "bigru-traced.onnx", 18)  # traces: it predates the onnx_graph hook
export_fp32(bigru, 5, work / "bigru-one-node.onnx", 18)
export_fp32(kim, 5, work / "kim-cnn.onnx", 18)
calibration = [rng.integers(1, 8000, (32, n)) for n in (16, 32, 64)]
sessions, nodes = {}, {}
for name in ("bigru-traced", "bigru-one-node", "kim-cnn"):
    for recipe in (RECIPES[0], RECIPES[-1]):
        path = work / f"{name}-{recipe.name}.onnx"
        quantize_int8(work / f"{name}.onnx", path, calibration, recipe)
        sessions[f"{name} {recipe.name}"] = onnx_session(path)
        nodes[f"{name} {recipe.name}"] = len(onnx.load(str(path)).graph.node)

rounds = {(k, n): [] for k in sessions for n in LENGTHS}
for _ in range(ROUNDS):
    for length in LENGTHS:
        ids = rng.integers(1, 8000, (1, length))
        for key, session in sessions.items():
            for _ in range(20):
                session.run(None, {"input_ids": ids})
            started = time.perf_counter()
            for _ in range(CALLS):
                session.run(None, {"input_ids": ids})
            rounds[(key, length)].append(1000 * (time.perf_counter() - started) / CALLS)
median = {k: {str(n): round(statistics.median(rounds[(k, n)]), 4) for n in LENGTHS} for k in sessions}
json.dump({"cpu": cpu_model_and_flags()[0], "threads": 1, "rounds": ROUNDS, "calls_per_round": CALLS, "nodes": nodes, "median_ms": median,
           "traced_over_one_node": {recipe.name: {str(n): round(median[f"bigru-traced {recipe.name}"][str(n)] / median[f"bigru-one-node {recipe.name}"][str(n)], 2)
                                                  for n in LENGTHS} for recipe in (RECIPES[0], RECIPES[-1])}},
          sys.stdout, indent=1)
print()
