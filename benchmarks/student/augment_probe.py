"""Probe: word-replacement variants of the labeled texts, labeled by the teacher, as extra transfer text
(TinyBERT's data augmentation, Jiao et al. 2020, with neighbours from the teacher's own input embeddings).

Copies RUN to OUT (hard links) and puts the variants where the oracle's real unlabeled texts go
(data/unlabeled.jsonl, annotate/unlabeled.npy: torch fp32 teacher logits), so that
`ablate.py OUT ... --variant kim-cnn:teacher:synthetic+unlabeled` trains on synthetic + augmented texts.

    python benchmarks/student/augment_probe.py runs/demo-20k runs/demo-20k-aug --per-text 20 --p 0.4
"""

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.rundir import load_split
from gendistill.compressor.teacher import load_teacher
from probe_run import copy_run, label_and_save  # benchmarks/student/probe_run.py

parser = argparse.ArgumentParser()
parser.add_argument("run_dir", type=Path)
parser.add_argument("out_dir", type=Path)
parser.add_argument("--per-text", type=int, default=20)
parser.add_argument("--p", type=float, default=0.4, help="chance each replaceable word is replaced")
parser.add_argument("--neighbours", type=int, default=15)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(2)
copy_run(args.run_dir, args.out_dir)
train_texts, _ = load_split(args.run_dir, "train")
model, tokenizer = load_teacher(args.run_dir)
table = model.encoder.get_input_embeddings().weight.detach().float()
vocab = tokenizer.get_vocab()
words = [w for w in vocab if re.fullmatch(r"[a-z]{2,}", w)]  # whole-word pieces only
ids = torch.tensor([vocab[w] for w in words])
unit = torch.nn.functional.normalize(table[ids], dim=1)
index = {w: i for i, w in enumerate(words)}

neighbours = {}
for text in train_texts:
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in index and word not in neighbours:
            similarity = unit @ unit[index[word]]
            top = similarity.topk(args.neighbours + 1).indices.tolist()
            neighbours[word] = [words[i] for i in top if words[i] != word][: args.neighbours]

rng = np.random.RandomState(args.seed)
variants, seen = [], set(train_texts)
for text in train_texts:
    tokens = re.split(r"(\W+)", text)
    for _ in range(args.per_text):
        out = [rng.choice(neighbours[t.lower()]) if t.lower() in neighbours and rng.rand() < args.p else t for t in tokens]
        variant = "".join(out)
        if variant not in seen:
            seen.add(variant)
            variants.append(variant)
print(f"{len(variants)} variants of {len(train_texts)} texts; e.g.\n  " + "\n  ".join(variants[:: max(len(variants) // 6, 1)][:6]))
label_and_save(args.run_dir, args.out_dir, variants, "variants", model, tokenizer)
