"""Two ways to run the teacher in bfloat16 on CPU, and batch sizes, side by side: texts/s and fidelity to fp32 torch.

`autocast`: torch's bfloat16 autocast over the fp32 model (matrix products in bfloat16, layer norms and softmax in
fp32, weights cast on use); `weights`: a copy of the model with its weights cast to bfloat16 once (every operation in
bfloat16; torch's CPU layer norm and softmax still accumulate in fp32). On 640 of the run's synthetic texts (from the
1,001st), batches sorted by length as annotate runs them, with torch's threads (2 here). The configurations take turns
for 4 rounds so all see the same machine; the median texts/s of the rounds is kept.

    python benchmarks/teacher/bf16.py runs/demo27 > benchmarks/teacher/bf16.json

Heavy (about 4 minutes on 2 cores): run nothing else beside it.
"""

import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gendistill.compressor.annotate import probability_difference
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits

run = Path(sys.argv[1])
model, tokenizer = load_teacher(run)
texts = load_synthetic(run)[1000:1640]
reference = teacher_logits(model, tokenizer, texts, 128)
weights = copy.deepcopy(model).to(torch.bfloat16).eval()
configurations = {f"{way} batch {size}": (way, size) for way in ("autocast", "weights") for size in (32, 64)}
rates = {name: [] for name in configurations}
fidelity = {}
for round_ in range(4):
    for name, (way, size) in configurations.items():
        tick = time.time()
        logits = (teacher_logits(model, tokenizer, texts, 128, size, bf16=True) if way == "autocast"
                  else teacher_logits(weights, tokenizer, texts, 128, size))
        rates[name].append(len(texts) / (time.time() - tick))
        fidelity[name] = {"mean_probability_difference": probability_difference(logits, reference),
                          "argmax_agreement": float((logits.argmax(1) == reference.argmax(1)).mean())}
        print(round_, name, f"{rates[name][-1]:.1f} texts/s", file=sys.stderr, flush=True)
results = {"run_dir": str(run), "texts": len(texts), "threads": torch.get_num_threads(), "rounds": 4,
           "configurations": {name: {"texts_per_second": statistics.median(rates[name]), "per_round": rates[name], **fidelity[name]}
                              for name in configurations}}
json.dump(results, sys.stdout, indent=1)
