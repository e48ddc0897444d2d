"""Probe: two texts joined by a contrast ("A, but B", "although A, B", ...), labeled by the teacher, as extra
transfer text.

The student agrees with its teacher far less on test reviews that turn on contrast or negation ("but", "not",
"though": 61-65%) than on the rest (74-75%; RESULTS.md, "The bigru's subword table"). The synthetic texts rarely
teach which clause of a contrast carries the verdict; the teacher knows it (on the demo's run it follows the clause a
contrast puts weight on for 70-83% of joined pairs of opposite training texts, against 52% for the two sentences
side by side). Joining two of the run's texts costs no sampling, only the teacher's pass over the joined text.

Copies RUN to OUT (hard links) and puts the joined texts where the oracle's real unlabeled texts go
(data/unlabeled.jsonl, annotate/unlabeled.npy: teacher logits, torch fp32), so that
`ablate.py OUT ... --variant bigru:teacher:synthetic+unlabeled:...` trains on the synthetic texts + the joined ones.

    python benchmarks/student/contrast_probe.py runs/demo runs/demo-contrast --count 5000
    python benchmarks/student/ablate.py runs/demo-contrast benchmarks/student/contrast/demo.json --seeds 3 --variant ...
    python benchmarks/student/contrast_probe.py runs/demo runs/demo-contrast --score > benchmarks/student/contrast/subsets.json

    python benchmarks/student/contrast_probe.py runs/demo runs/demo-contrast --check 100 > benchmarks/student/contrast/check.json

`--check` and `--score` make nothing. `--check` prints how often the teacher follows B on pairs of training texts it
labels oppositely; `--score` prints, as JSON, each student under OUT/student-ablation's agreement with the teacher on the
test reviews with a contrast word, with a negation word and no contrast word, and on the rest.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.rundir import load_split
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length
from gendistill.runtime.classifier import Classifier
from probe_run import copy_run, known_texts, label_and_save  # benchmarks/student/probe_run.py

TEMPLATES = ("{a}, but {b}", "although {a}, {b}", "{a}; however, {b}", "{b}, even though {a}", "{a}, yet {b}")
"""Contrasts in which the clause B carries the verdict (the templates starting with B put it first)."""

parser = argparse.ArgumentParser()
parser.add_argument("run_dir", type=Path)
parser.add_argument("out_dir", type=Path)
parser.add_argument("--count", type=int, default=5000, help="joined texts to make")
parser.add_argument("--real-share", type=float, default=0.5, help="share of clauses drawn from the labeled training texts (the rest synthetic)")
parser.add_argument("--min-words", type=int, default=3)
parser.add_argument("--max-words", type=int, default=20)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--score", action="store_true", help="score OUT's ablation students on the test subsets instead")
parser.add_argument("--check", type=int, default=0, metavar="PAIRS",
                    help="instead: how often the teacher follows B on this many pairs of training texts it labels oppositely")
args = parser.parse_args()


def clause(text: str) -> str | None:
    """`text` as a clause to join: its words on one line without closing punctuation, None when it spans lines or
    has fewer than --min-words or more than --max-words words."""
    out = " ".join(text.split()).rstrip(" .!?")
    return out if "\n" not in text.strip() and args.min_words <= len(out.split()) <= args.max_words else None


def join(template: str, a: str, b: str) -> str:
    """The clauses joined by `template` into one sentence: each clause starts in lower case, the sentence in upper."""
    text = template.format(a=a[:1].lower() + a[1:], b=b[:1].lower() + b[1:])
    return text[:1].upper() + text[1:]


CONTRAST = re.compile(r"\b(but|yet|though|although|however)\b")
NEGATION = re.compile(r"\b(not|n't|no|never)\b")


def score_subsets() -> dict:
    """Agreement with the teacher (int8 bundles) on the test reviews with a contrast word, with a negation word and no
    contrast word, and on the rest, per student seed of each variant under OUT/student-ablation."""
    texts, _ = load_split(args.out_dir, "test")
    teacher = np.load(args.out_dir / "annotate" / "test.npy").argmax(1)
    lowered = [t.lower() for t in texts]
    contrast = np.array([CONTRAST.search(t) is not None for t in lowered])
    negation = np.array([NEGATION.search(t) is not None for t in lowered]) & ~contrast
    subsets = {"contrast": contrast, "negation": negation, "other": ~contrast & ~negation}
    out = {"reviews": {name: int(mask.sum()) for name, mask in subsets.items()}, "agreement": {}}
    for variant in sorted((args.out_dir / "student-ablation").iterdir()):
        for seed_dir in sorted(variant.glob("seed*")):
            agree = Classifier.load(seed_dir / "bundle").predict_proba(texts).argmax(1) == teacher
            out["agreement"].setdefault(variant.name, {})[seed_dir.name] = {name: round(float(agree[mask].mean()), 4) for name, mask in subsets.items()}
    return out


def check_teacher() -> dict:
    """For `--check` pairs (A, B) of one-line training texts the teacher labels oppositely (annotate/train.npy), each
    joined by every template and plainly side by side ("A. B"): the share of the joined texts whose teacher label is B's."""
    rng = np.random.RandomState(args.seed)
    texts = load_split(args.run_dir, "train")[0]
    labels = np.load(args.run_dir / "annotate" / "train.npy").argmax(1)
    one_line = [i for i, t in enumerate(texts) if clause(t) is not None]
    by_label = [[i for i in one_line if labels[i] == k] for k in (0, 1)]
    joined, follows = [], []
    for pair in range(args.check):
        a, b = by_label[pair % 2][rng.randint(len(by_label[pair % 2]))], by_label[1 - pair % 2][rng.randint(len(by_label[1 - pair % 2]))]
        for template in TEMPLATES + ("{a}. {b}",):
            joined.append((template, join(template, clause(texts[a]), clause(texts[b]))))
            follows.append(labels[b])
    model, tokenizer = load_teacher(args.run_dir)
    predicted = teacher_logits(model, tokenizer, [t for _, t in joined], teacher_max_length(args.run_dir), 64, desc="teacher on pairs").argmax(1)
    return {template: round(float(np.mean([p == f for (t, _), p, f in zip(joined, predicted, follows) if t == template])), 3)
            for template in TEMPLATES + ("{a}. {b}",)}


if args.score or args.check:
    json.dump(score_subsets() if args.score else {"pairs": args.check, "follows_b": check_teacher()}, sys.stdout, indent=2)
    print()
    sys.exit()

torch.set_num_threads(2)
copy_run(args.run_dir, args.out_dir)
rng = np.random.RandomState(args.seed)
seen = known_texts(args.run_dir)
synthetic = load_synthetic(args.run_dir)
train_texts, _ = load_split(args.run_dir, "train")
pools = {name: [c for c in map(clause, texts) if c is not None] for name, texts in (("train", train_texts), ("synthetic", synthetic))}
print({name: len(pool) for name, pool in pools.items()})


def draw() -> str:
    pool = pools["train" if rng.rand() < args.real_share else "synthetic"]
    return pool[rng.randint(len(pool))]


joined = []
while len(joined) < args.count:
    template = TEMPLATES[rng.randint(len(TEMPLATES))]
    text = join(template, draw(), draw())
    if text not in seen:
        seen.add(text)
        joined.append(text)
print(f"{len(joined)} joined texts; e.g.\n  " + "\n  ".join(joined[:: max(len(joined) // 6, 1)][:6]))
label_and_save(args.run_dir, args.out_dir, joined, "joined texts")
