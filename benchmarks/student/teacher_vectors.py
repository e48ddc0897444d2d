"""Save the teacher's pooled sentence vectors beside a finished run's annotations (annotate/<split>.vectors.npy),
for the `match_vectors` student variant. Torch fp32 teacher; train split and every synthetic text.

    cp -al runs/demo-20k runs/demo-20k-vec && python benchmarks/student/teacher_vectors.py runs/demo-20k-vec
"""

import sys

import numpy as np
import torch

from gendistill.compressor.rundir import load_split, read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import _run, load_teacher

torch.set_num_threads(2)
run = sys.argv[1]
model, tokenizer = load_teacher(run)
max_length = read_json(stage_path(run, "teacher") / "settings.json")["max_length"]
for split, texts in (("train", load_split(run, "train")[0]), ("synthetic", load_synthetic(run))):
    np.save(stage_path(run, "annotate") / f"{split}.vectors.npy", _run(model, tokenizer, texts, max_length, 64, split, "embed"))
