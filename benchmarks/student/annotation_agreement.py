"""How closely two runs' int8 annotations of the same synthetic texts follow the torch fp32 teacher: argmax agreement
and mean |probability difference| on a seeded sample. Both runs must share their teacher and synthetic texts.

    python benchmarks/student/annotation_agreement.py runs/demo-20k runs/benchmark/rotten-tomatoes/seed0 \
        benchmarks/student/annotation-agreement.json
"""

import json
import sys

import numpy as np
import torch

from gendistill.compressor.annotate import load_annotations, probability_difference
from gendistill.compressor.rundir import read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length

torch.set_num_threads(2)
first, second, out = sys.argv[1:4]
texts = load_synthetic(first)
assert texts == load_synthetic(second), "the two runs must share their synthetic texts"
sample = np.random.RandomState(0).choice(len(texts), 2000, replace=False)
model, tokenizer = load_teacher(first)
reference = teacher_logits(model, tokenizer, [texts[i] for i in sample], teacher_max_length(first), 64)
result = {"texts": len(sample)}
for run in (first, second):
    annotated = load_annotations(run, "synthetic")[sample]
    recipe = read_json(stage_path(run, "annotate") / "metrics.json").get("int8_check", {}).get("recipe")
    result[run] = {"recipe": recipe, "argmax_agreement_with_torch": float((annotated.argmax(1) == reference.argmax(1)).mean()),
                   "mean_abs_probability_difference": probability_difference(annotated, reference)}
print(json.dumps(result, indent=1))
with open(out, "w", encoding="utf-8") as handle:
    json.dump(result, handle, indent=1)
