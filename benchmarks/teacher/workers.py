"""One teacher pass over every torch thread, or one-thread passes side by side (`teacher._run`'s `workers`), in fp32
and under bfloat16 autocast: texts/s, alternated round by round so every layout sees the same machine.

On the first 256 test texts of a finished run (real snippets, as long as the texts annotate labels), batches of 64
sorted by length, as annotate runs them. Also the largest |logit difference| between the two layouts.

    python benchmarks/teacher/workers.py runs/benchmark/rotten-tomatoes/seed1 > benchmarks/teacher/workers.json

Heavy (about 2 minutes on 2 cores): run nothing else beside it.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.rundir import load_split
from gendistill.compressor.teacher import load_teacher, teacher_max_length
from gendistill.compressor import teacher

run = Path(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
model, tokenizer = load_teacher(run)
model.eval()
max_length = teacher_max_length(run)
texts = load_split(run, "test")[0][:256]
threads = torch.get_num_threads()
layouts = {f"{precision}-{layout}": (precision == "bf16", 1 if layout == "one-pass" else threads)
           for precision in ("fp32", "bf16") for layout in ("one-pass", "side-by-side")}
rates = {name: [] for name in layouts}
logits = {}
teacher._run(model, tokenizer, texts[:64], max_length, 64, None, "forward", bf16=True)  # warm-up: first bf16 kernels
for _ in range(rounds):
    for name, (bf16, workers) in layouts.items():
        tick = time.time()
        logits[name] = teacher._run(model, tokenizer, texts, max_length, 64, None, "forward", bf16=bf16, workers=workers)
        rates[name].append(len(texts) / (time.time() - tick))
        print(name, round(rates[name][-1], 1), file=sys.stderr, flush=True)
results = {
    "run_dir": str(run), "texts": len(texts), "threads": threads, "rounds": rounds, "texts_per_second": rates,
    "median_texts_per_second": {name: statistics.median(values) for name, values in rates.items()},
    "side_by_side_over_one_pass": {precision: statistics.median(b / a for a, b in zip(rates[f"{precision}-one-pass"], rates[f"{precision}-side-by-side"]))
                                   for precision in ("fp32", "bf16")},
    "max_logit_difference_between_layouts": {precision: float(np.abs(logits[f"{precision}-one-pass"] - logits[f"{precision}-side-by-side"]).max())
                                             for precision in ("fp32", "bf16")},
}
json.dump(results, sys.stdout, indent=1)
