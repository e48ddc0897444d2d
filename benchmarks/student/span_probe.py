"""Probe: contiguous word spans of the run's texts, labeled by the teacher, as extra transfer text (phrase-level
soft labels, as the Stanford Sentiment Treebank labels every phrase of a sentence).

The student agrees with its teacher on its training texts far more than on test texts: it learns which whole texts
are positive, not which phrases make them so. A span of a text (a contiguous run of 40-80% of its words) is cheap
new transfer text that stays in the domain's vocabulary, style and length range, and the teacher's label on it says
what that phrase alone carries. Spans are drawn from the labeled training texts (real text) and from the synthetic
texts, deduplicated against every split and each other.

Copies RUN to OUT (hard links) and puts the spans where the oracle's real unlabeled texts go (data/unlabeled.jsonl,
annotate/unlabeled.npy: teacher logits, torch fp32), so that `ablate.py OUT ... --variant
kim-cnn:teacher:synthetic+unlabeled` trains on the kept synthetic texts + the spans.

    python benchmarks/student/span_probe.py runs/demo-20k runs/demo-20k-spans --train-spans 10 --synthetic-spans 6000
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.rundir import load_split
from gendistill.compressor.synthesize import load_synthetic
from probe_run import copy_run, known_texts, label_and_save  # benchmarks/student/probe_run.py

parser = argparse.ArgumentParser()
parser.add_argument("run_dir", type=Path)
parser.add_argument("out_dir", type=Path)
parser.add_argument("--train-spans", type=int, default=10, help="spans drawn per labeled training text")
parser.add_argument("--synthetic-spans", type=int, default=6000, help="one span from each of this many synthetic texts (a seeded sample)")
parser.add_argument("--low", type=float, default=0.4, help="shortest span, as a share of the text's words")
parser.add_argument("--high", type=float, default=0.8, help="longest span, as a share of the text's words")
parser.add_argument("--min-words", type=int, default=3)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(2)
copy_run(args.run_dir, args.out_dir)
rng = np.random.RandomState(args.seed)
seen = known_texts(args.run_dir)
synthetic = load_synthetic(args.run_dir)


def span(text: str) -> str | None:
    words = text.split()
    if len(words) < 2 * args.min_words:
        return None
    length = max(args.min_words, int(round(len(words) * rng.uniform(args.low, args.high))))
    start = rng.randint(0, len(words) - length + 1)
    return " ".join(words[start : start + length])


spans, sources = [], []
train_texts, _ = load_split(args.run_dir, "train")
picked = rng.choice(len(synthetic), size=min(args.synthetic_spans, len(synthetic)), replace=False)
for source, texts, draws in (("train", train_texts, args.train_spans), ("synthetic", [synthetic[i] for i in picked], 1)):
    for text in texts:
        for _ in range(draws):
            piece = span(text)
            if piece and piece not in seen:
                seen.add(piece)
                spans.append(piece)
                sources.append(source)
print(f"{len(spans)} spans ({sources.count('train')} of training texts, {sources.count('synthetic')} of synthetic ones); e.g.\n  "
      + "\n  ".join(spans[:: max(len(spans) // 8, 1)][:8]))
logits = label_and_save(args.run_dir, args.out_dir, spans, "spans")
probabilities = torch.softmax(torch.from_numpy(logits), 1).numpy()
for source in ("train", "synthetic"):
    mask = np.asarray(sources) == source
    if mask.any():
        print(f"{source} spans: mean max-probability {probabilities[mask].max(1).mean():.3f}, label counts {np.bincount(probabilities[mask].argmax(1)).tolist()}")
