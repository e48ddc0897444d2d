"""Probe: synthetic texts started from a random English word, for a wider vocabulary used in context.

The fine-tuned generator's samples (temperature 1, from BOS) cover 91% of the test split's word tokens, real reviews
95% ("What the transfer texts cover of the test vocabulary" in RESULTS.md), and the student misses ordinary reviews
whose words it has seldom seen used. Here every sample starts from BOS and one word drawn uniformly from the
teacher's whole-word vocabulary (lowercase ASCII letters, 3 or more; 21,358 words for all-mpnet-base-v2),
capitalised, and the fine-tuned generator continues it (the run's sampler and sampling settings, or another
`--temperature`; the kept text is the word and its continuation, as `--synthesis-prefix-share` keeps its openings).
At temperature 1 the continuations are the same word salad as the run's own samples; at 0.7 they read as reviews,
and the random first words keep them varied (sampling at 0.8 from BOS alone had lost vocabulary: RESULTS.md). Empty texts and copies of RUN's
texts (its splits and synthetic pool) are dropped; RUN's teacher (torch fp32) labels the rest. Two runs, RUN
hard-linked, whose synthetic pool is:

- OUT-mix:     RUN's first COUNT/2 synthetic texts + COUNT/2 seeded ones (the same count as RUN: a swap);
- OUT-replace: COUNT seeded texts alone.

    python benchmarks/student/seed_word_probe.py runs/demo runs/demo-seedword-t07 --count 10000 --temperature 0.7
    V=bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher
    for k in mix replace; do rm -rf runs/demo-seedword-t07-$k/student-ablation   # RUN's students, hard-linked
      python benchmarks/student/ablate.py runs/demo-seedword-t07-$k benchmarks/student/seed-word/t07-$k.json --seeds 3 --variant $V; done

Resumes: the seeded texts and their logits are kept in OUT-texts/ once made. `--preview N` prints N seeded samples
and stops.
"""

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from gendistill.compressor.data import text_key
from gendistill.compressor.rundir import stage_path
from gendistill.compressor.samplers import open_sampler
from gendistill.compressor.bench_synthesize import run_settings
from gendistill.compressor.synthesize import drop_reason
from gendistill.compressor.training import progress
from probe_run import known_texts, labeled_store, probe_parser, swap_and_replace  # benchmarks/student/probe_run.py


def seed_words(run_dir: Path) -> list[str]:
    """The teacher's whole-word vocabulary entries of 3 or more lowercase ASCII letters, in vocabulary order."""
    from transformers import AutoTokenizer

    vocabulary = AutoTokenizer.from_pretrained(stage_path(run_dir, "teacher") / "model").get_vocab()
    return [w for w, _ in sorted(vocabulary.items(), key=lambda item: item[1]) if len(w) >= 3 and w.isascii() and w.isalpha() and w.islower()]


def sample(run_dir: Path, count: int, exclude: set[str], seed: int, temperature: float | None) -> tuple[list[str], dict]:
    settings = run_settings(run_dir)
    if temperature is not None:
        settings = replace(settings, sampling_temperature=temperature)
    sampler = open_sampler(settings, run_dir)
    words = seed_words(run_dir)
    rng = random.Random(seed)
    kept, seen, sampled, started, shard = [], set(), 0, time.time(), 0
    bar = progress(total=count, desc="seeded synthesis", unit="text")
    while len(kept) < count and sampled < 4 * count:
        chosen = [rng.choice(words).capitalize() for _ in range(settings.batch_size)]
        prefixes = [sampler.tokenizer(w, add_special_tokens=False)["input_ids"] for w in chosen]
        for row in sampler.sample(len(prefixes), settings, seed * 100_003 + shard, prefixes):
            sampled += 1
            key = text_key(row["text"])
            if drop_reason(key, seen, exclude) is None:
                seen.add(key)
                kept.append(row["text"])
        shard += 1
        bar.update(min(len(kept), count) - bar.n)
    bar.close()
    seconds = time.time() - started
    return kept[:count], {"words": len(words), "sampled": sampled, "kept": min(len(kept), count), "seconds": seconds,
                          "kept_texts_per_second": min(len(kept), count) / seconds}


def main():
    parser = probe_parser(10000)
    parser.add_argument("--preview", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature of the continuation (default: RUN's)")
    args = parser.parse_args()

    exclude = {text_key(t) for t in known_texts(args.run_dir)}
    if args.preview:
        texts, stats = sample(args.run_dir, args.preview, exclude, args.seed + 1, args.temperature)
        print(json.dumps(stats), *texts, sep="\n")
        return
    texts, logits, _ = labeled_store(args.run_dir, args.out, lambda: sample(args.run_dir, args.count, exclude, args.seed, args.temperature),
                                     "seeded texts")
    swap_and_replace(args.run_dir, args.out, texts, logits)


if __name__ == "__main__":
    main()
