"""Does rule-based augmentation of the labeled texts (Tang et al. 2019) add transfer text worth having beside the
synthetic texts? Students side by side on one finished run, 3 student seeds. (It measured no gain: a probe, not a
pipeline stage; benchmarks/student/RESULTS.md.)

    python benchmarks/student/rules_augment_probe.py runs/demo benchmarks/student/results-rules-augment.json --per-text 20 \
        --variant synthetic --variant synthetic+augmented --variant augmented

Variants: `synthetic` (the run's own distill settings and transfer texts), `synthetic+augmented` (the same plus the
rewrites of the labeled texts, labeled by the run's teacher), `augmented` (the rewrites alone). Each student trains
through the distill stage's `distill_student` and is exported as the pipeline exports it; the bundle's test accuracy
is what the mean and spread are of. The teacher's logits on the rewrites are cached in RUN_DIR/augment/. Resumes: a
(variant, seed) already in the results file with the same settings is not re-trained.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.benchmark.students import measure_student
from gendistill.compressor.distill import distill_student, training_set
from gendistill.compressor.rundir import load_labels, load_split, read_json, stage_path

from ablate import run_settings, save  # the variant bookkeeping ablate.py keeps (this script's folder is on sys.path)


# The rewrite rules (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks",
# section 3.3). Each labeled text is rewritten `per_text` times; the teacher then labels every rewrite, so a rewrite whose
# meaning changed ("not bad" -> "bad") gets the teacher's new answer, which is what the student should learn.
# For each word, with probability `p_drop` it is dropped (Tang et al. replace it by [MASK], a token the student
# never sees at inference), with probability `p_replace` it is replaced by a word drawn from the labeled
# texts' unigram distribution (theirs draws a word of the same part of speech, which needs a tagger this
# offline package does not ship). Then, with probability `p_ngram`, only an n-gram of the result is kept,
# n uniform in 1..`max_ngram`. Duplicates and copies of the labeled texts are dropped.
def augment(texts: list[str], per_text: int = 20, seed: int = 0, p_drop: float = 0.1, p_replace: float = 0.1,
            p_ngram: float = 0.25, max_ngram: int = 5) -> list[str]:
    """Up to `per_text` distinct rewrites of each text (whitespace words), in the order of `texts`."""
    rng = np.random.default_rng(seed)
    words = [text.split() for text in texts]
    vocabulary, counts = np.unique([w for ws in words for w in ws], return_counts=True)
    unigram = counts / counts.sum()
    seen = set(texts)
    out = []
    for ws in words:
        if not ws:
            continue
        for _ in range(per_text):
            draw = rng.random(len(ws))
            replacements = vocabulary[rng.choice(len(vocabulary), size=len(ws), p=unigram)]
            new = [replacements[i] if p_drop <= x < p_drop + p_replace else w for i, (w, x) in enumerate(zip(ws, draw)) if x >= p_drop]
            if new and rng.random() < p_ngram:
                n = int(rng.integers(1, max_ngram + 1))
                start = int(rng.integers(0, max(len(new) - n, 0) + 1))
                new = new[start:start + n]
            text = " ".join(new)
            if text and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def augmented_annotations(run_dir: Path, per_text: int, seed: int) -> tuple[list[str], np.ndarray]:
    """The rewrites of the run's labeled texts and the teacher's calibrated logits on them (cached)."""
    cache = run_dir / "augment" / f"per{per_text}-seed{seed}"
    if (cache / "logits.npy").is_file():
        return json.loads((cache / "texts.json").read_text()), np.load(cache / "logits.npy")
    import torch

    from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length

    texts = augment(load_split(run_dir, "train")[0], per_text=per_text, seed=seed)
    model, tokenizer = load_teacher(run_dir)
    engine = read_json(stage_path(run_dir, "annotate") / "metrics.json").get("engine")
    tick = time.time()
    logits = teacher_logits(model, tokenizer, texts, teacher_max_length(run_dir), desc="annotate augmented", bf16=engine == "torch-bf16")
    print(f"annotated {len(texts)} rewrites in {time.time() - tick:.0f} s ({engine}, {torch.get_num_threads()} threads)", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "texts.json").write_text(json.dumps(texts))
    np.save(cache / "logits.npy", logits)
    return texts, logits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--per-text", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=["synthetic", "synthetic+augmented", "augmented"])
    args = parser.parse_args()
    variants = args.variant or ["synthetic", "synthetic+augmented"]
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"run_dir": str(args.run_dir), "variants": {}}
    base = run_settings(args.run_dir)
    test_texts, test_y = load_split(args.run_dir, "test")
    k = len(load_labels(args.run_dir))
    teacher_test = load_annotations(args.run_dir, "test").argmax(1)
    extra_texts, extra_logits = augmented_annotations(args.run_dir, args.per_text, 0)
    results["augmented_texts"] = len(extra_texts)
    for variant in variants:
        entry = results["variants"].setdefault(f"{variant}:per_text={args.per_text}" if "augmented" in variant else variant, {"per_seed": {}})
        for seed in range(args.seeds):
            settings = dataclasses.replace(base, seed=seed)
            if entry["per_seed"].get(str(seed), {}).get("settings") == dataclasses.asdict(settings):
                continue
            data = training_set(args.run_dir, settings, "none" if variant == "augmented" else "synthetic")
            if "augmented" in variant:
                data = {"texts": data["texts"] + extra_texts, "hard": np.concatenate([data["hard"], -np.ones(len(extra_texts), int)]),
                        "soft": np.concatenate([data["soft"], extra_logits.astype(data["soft"].dtype)])}
            student_dir = args.run_dir / "augment" / "students" / variant.replace("+", "_") / f"seed{seed}" / "student"
            tick = time.time()
            metrics = distill_student(settings, args.run_dir, data, student_dir, desc=f"{variant} seed {seed}")
            seconds = time.time() - tick
            measured = measure_student(args.run_dir, student_dir, test_texts, test_y, k, True, test_texts[:200], teacher_test)
            entry["per_seed"][str(seed)] = {"settings": dataclasses.asdict(settings), "train_seconds": seconds, "dev_accuracy": metrics["dev_accuracy"],
                                            "training_texts": metrics["training_texts"], **measured}
            save(args.results, results, entry)
            print(f"{variant} seed {seed}: torch {measured['accuracy']:.4f} bundle {measured.get('int8_accuracy')} "
                  f"agreement {measured['test_agreement']:.3f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    for name, entry in results["variants"].items():
        print(f"{name:40s} {100 * entry['bundle_accuracy']:.1f} ± {100 * entry['bundle_accuracy_std']:.1f}  (n={len(entry['per_seed'])})")


if __name__ == "__main__":
    main()
