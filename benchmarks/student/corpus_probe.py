"""Probe: real sentences of another domain as transfer text. Is what real reviews teach the student (+2.0 over 80,000
synthetic texts, +5 on the demo's run) that they are real text, or that they are reviews?

The sentences of the embedded bbc-news articles (2,225 articles of five topics, 36,157 such sentences; split at
". ", "? ", "! " and line ends, 5 to 40 words kept, copies and RUN's own texts dropped), COUNT of them drawn (seeded),
labeled by RUN's teacher (torch fp32). Two runs, RUN hard-linked, whose synthetic pool is (`probe_run.swap_and_replace`):

- OUT-mix:     RUN's first COUNT/2 synthetic texts + COUNT/2 news sentences;
- OUT-replace: COUNT news sentences alone.

    python benchmarks/student/corpus_probe.py runs/demo runs/demo-bbc --count 10000
    V=bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher
    for k in mix replace; do rm -rf runs/demo-bbc-$k/student-ablation   # runs/demo's students, hard-linked
      python benchmarks/student/ablate.py runs/demo-bbc-$k benchmarks/student/corpus/bbc-$k.json --seeds 3 --variant $V; done

Resumes: the sentences and their logits are kept in OUT-texts/ once made.
"""

import argparse
import json
import random
import re
import time
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import CONFIDENT, load_annotations
from gendistill.compressor.data import read_labeled, text_key
from gendistill.compressor.rundir import write_jsonl_atomic
from gendistill.runtime.classifier import softmax
from probe_run import known_texts, swap_and_replace  # benchmarks/student/probe_run.py


def news_sentences() -> list[str]:
    """The bbc-news articles' sentences of 5 to 40 words, each once, in article order."""
    texts, _, _ = read_labeled("bbc-news")
    sentences, seen = [], set()
    for article in texts:
        for sentence in re.split(r"(?<=[.?!])\s+|\n+", article):
            sentence = sentence.strip()
            if 5 <= len(sentence.split()) <= 40 and text_key(sentence) not in seen:
                seen.add(text_key(sentence))
                sentences.append(sentence)
    return sentences


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length

    store = args.out.with_name(args.out.name + "-texts")
    store.mkdir(parents=True, exist_ok=True)
    if not (store / "logits.npy").is_file():
        known = {text_key(t) for t in known_texts(args.run_dir)}
        pool = [s for s in news_sentences() if text_key(s) not in known]
        texts = random.Random(args.seed).sample(pool, min(args.count, len(pool)))
        write_jsonl_atomic(store / "texts.jsonl", [{"text": t} for t in texts])
        model, tokenizer = load_teacher(args.run_dir)
        started = time.time()
        logits = teacher_logits(model, tokenizer, texts, teacher_max_length(args.run_dir), 64, desc="teacher on news sentences")
        (store / "stats.json").write_text(json.dumps({"sentences": len(pool), "drawn": len(texts), "teacher_seconds": time.time() - started}, indent=1))
        np.save(store / "logits.npy", logits)
    texts = [json.loads(line)["text"] for line in (store / "texts.jsonl").open()]
    logits = np.load(store / "logits.npy")
    stats = json.loads((store / "stats.json").read_text())
    probabilities, default = softmax(logits), softmax(load_annotations(args.run_dir, "synthetic"))
    print(f"{len(texts)} of {stats['sentences']} news sentences; teacher >= {CONFIDENT} sure of {(probabilities.max(1) >= CONFIDENT).mean():.1%} "
          f"(RUN's synthetic texts: {(default.max(1) >= CONFIDENT).mean():.1%}), label counts {np.bincount(probabilities.argmax(1)).tolist()}, "
          f"{np.mean([len(t.split()) for t in texts]):.1f} words on average")
    swap_and_replace(args.run_dir, args.out, texts, logits)


if __name__ == "__main__":
    main()
