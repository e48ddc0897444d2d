"""End-to-end batch-1 latency of trained bundles side by side: `Classifier.predict_proba(text)` (tokenizer,
onnxruntime on one thread, softmax) on the run's first 500 test texts, alternating rounds, median of the rounds'
medians. Made for the GRU-width comparison (benchmarks/student/RESULTS.md):

    python benchmarks/student/gru_units_e2e.py runs/benchmark/rotten-tomatoes/seed2 \\
        runs/benchmark/rotten-tomatoes/seed2/student-ablation/bigru_teacher_synthetic_gru_units-{32,64}/seed0/bundle \\
        > benchmarks/student/gru-units/e2e-latency.json

Light (a minute); run nothing heavy beside it.
"""

import json
import statistics
import sys

from gendistill.compressor.benchmark.measure import median_ms
from gendistill.compressor.rundir import load_split
from gendistill.compressor.teacher_onnx import cpu_model_and_flags
from gendistill.runtime.classifier import Classifier

ROUNDS = 7
run_dir, bundles = sys.argv[1], sys.argv[2:]
texts = load_split(run_dir, "test")[0][:500]
classifiers = {bundle: Classifier.load(bundle) for bundle in bundles}
rounds = {bundle: [] for bundle in bundles}
for _ in range(ROUNDS):
    for bundle, classifier in classifiers.items():
        rounds[bundle].append(median_ms(classifier.predict_proba, texts, warmup=50))
pieces = [len(ids) for ids in next(iter(classifiers.values())).encode(texts)]
print(json.dumps({"cpu": cpu_model_and_flags()[0], "threads": 1, "texts": len(texts), "median_pieces": statistics.median(pieces),
                  "rounds": ROUNDS, "median_ms": {bundle: round(statistics.median(r), 4) for bundle, r in rounds.items()}}, indent=1))
