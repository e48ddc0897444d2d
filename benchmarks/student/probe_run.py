"""Shared by the transfer-text probes: a hard-linked copy of a finished run whose real-unlabeled-text slot holds the
probe's texts and their teacher logits (augment_probe.py, span_probe.py), so that `ablate.py OUT ... --variant
kim-cnn:teacher:synthetic+unlabeled` trains on the run's synthetic texts + the probe's; or whose synthetic pool is
replaced by another one (join_pools.py, mix_pools.py, instruct_probe.py, seed_word_probe.py, corpus_probe.py).

Also shared by the probes that add a training-only term to the student's loss (token_targets.py, lm_probe.py):
`train_with_extra_loss` and `side_module`."""

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gendistill.compressor.data import text_key
from gendistill.compressor.rundir import load_split, stage_path, write_jsonl_atomic


def copy_run(run_dir: Path, out_dir: Path) -> None:
    """OUT as a copy of RUN made of hard links (instant, no extra disk), unless OUT already exists."""
    if not out_dir.exists():
        subprocess.run(["cp", "-al", str(run_dir), str(out_dir)], check=True)


def save_transfer_texts(out_dir: Path, texts: list[str], logits: np.ndarray) -> None:
    """Put `texts` and their teacher logits where the oracle's real unlabeled texts go (data/unlabeled.jsonl,
    annotate/unlabeled.npy)."""
    for path in (stage_path(out_dir, "data") / "unlabeled.jsonl", stage_path(out_dir, "annotate") / "unlabeled.npy"):
        if path.exists():
            os.unlink(path)  # a hard link into RUN: never write through it
    with open(stage_path(out_dir, "data") / "unlabeled.jsonl", "w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}) + "\n")
    np.save(stage_path(out_dir, "annotate") / "unlabeled.npy", logits.astype(np.float32))


def train_with_extra_loss(make) -> None:
    """Make the distill stage's `train_student` (as ablate.py calls it) train every student with
    `extra_loss=make(config, inputs, texts)`."""
    from gendistill.compressor import distill

    original = distill.train_student

    def train_student(config, inputs, vectors, *, texts, **kwargs):
        return original(config, inputs, vectors, texts=texts, extra_loss=make(config, inputs, texts), **kwargs)

    distill.train_student = train_student


def side_module(build):
    """(module, catch_up) for a training-only module beside the student: `build()` made under torch seed 0 (the same
    module every run) without moving the student's own random stream, and a function to call at the start of each
    extra-loss step, which applies the previous step's gradient to the module by its own Adam (lr 1e-3): by then the
    student's optimizer has stepped too."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def catch_up():
        if any(p.grad is not None for p in module.parameters()):
            optimizer.step()
            optimizer.zero_grad()

    return module, catch_up


def known_texts(run_dir: Path) -> set[str]:
    """Every text the run already has (its splits and its synthetic pool): what a probe's new texts must not repeat."""
    from gendistill.compressor.synthesize import load_synthetic

    known = set(load_synthetic(run_dir))
    for split in ("train", "dev", "test"):
        known.update(load_split(run_dir, split)[0])
    return known


def teacher_on(run_dir: Path, texts: list[str], what: str, model=None, tokenizer=None) -> tuple[np.ndarray, float]:
    """The run's teacher (torch fp32, at its input length, calibrated as the annotate stage's; `model` and `tokenizer`
    when already loaded) over `texts`: (logits, seconds it took)."""
    import time

    from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length

    if model is None:
        model, tokenizer = load_teacher(run_dir)
    started = time.time()
    logits = teacher_logits(model, tokenizer, texts, teacher_max_length(run_dir), 64, desc=f"teacher on {what}")
    return logits, time.time() - started


def label_and_save(run_dir: Path, out_dir: Path, texts: list[str], what: str, model=None, tokenizer=None) -> np.ndarray:
    """`teacher_on` `texts`, saved with them by `save_transfer_texts`; prints its rate, mean max-probability and
    predicted label counts. Returns the logits."""
    import torch

    logits, seconds = teacher_on(run_dir, texts, what, model, tokenizer)
    print(f"teacher: {len(texts) / seconds:.1f} texts/s")
    save_transfer_texts(out_dir, texts, logits)
    probabilities = torch.softmax(torch.from_numpy(logits), 1).numpy()
    print(f"mean max-probability {probabilities.max(1).mean():.3f}, label counts {np.bincount(probabilities.argmax(1)).tolist()}")
    return logits


def replace_synthetic_pool(run_dir: Path, out_dir: Path, texts: list[str], logits: np.ndarray) -> None:
    """OUT made again as RUN hard-linked, with its synthetic pool (synthesize/synthetic.jsonl, annotate/synthetic.npy)
    replaced by `texts` and their teacher `logits`."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    subprocess.run(["cp", "-al", str(run_dir), str(out_dir)], check=True)
    for path in (stage_path(out_dir, "synthesize") / "synthetic.jsonl", stage_path(out_dir, "annotate") / "synthetic.npy"):
        path.unlink()  # hard links: write new files, never through the links into RUN's own
    write_jsonl_atomic(stage_path(out_dir, "synthesize") / "synthetic.jsonl", [{"text": t} for t in texts])
    np.save(stage_path(out_dir, "annotate") / "synthetic.npy", logits.astype(np.float32))


def join_synthetic_pools(run_dir: Path, out_dir: Path, first: tuple[list[str], np.ndarray], second: tuple[list[str], np.ndarray]) -> None:
    """OUT as RUN hard-linked, with the synthetic pool `first` (texts, teacher logits) followed by the texts of
    `second` that are not in it, each with its own logits; prints the counts."""
    (first_texts, first_logits), (second_texts, second_logits) = first, second
    seen = {text_key(t) for t in first_texts}
    new = [i for i, t in enumerate(second_texts) if text_key(t) not in seen]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    replace_synthetic_pool(run_dir, out_dir, first_texts + [second_texts[i] for i in new], np.concatenate([first_logits, second_logits[new]]))
    print(f"{out_dir}: {len(first_texts)} + {len(new)} synthetic texts ({len(second_texts) - len(new)} of the second pool were in the first)")


def swap_and_replace(run_dir: Path, out: Path, texts: list[str], logits: np.ndarray) -> None:
    """Two runs, RUN hard-linked, for a probe's `texts` (and their teacher `logits`) as synthetic pool: OUT-mix holds
    RUN's first half as many synthetic texts as `texts` and the first half of `texts` (the same count as `texts`), and
    OUT-replace `texts` alone."""
    from gendistill.compressor.annotate import load_annotations
    from gendistill.compressor.synthesize import load_synthetic

    synthetic, first, half = load_synthetic(run_dir), load_annotations(run_dir, "synthetic"), len(texts) // 2
    replace_synthetic_pool(run_dir, out.with_name(out.name + "-mix"), synthetic[:half] + texts[:half], np.concatenate([first[:half], logits[:half]]))
    replace_synthetic_pool(run_dir, out.with_name(out.name + "-replace"), texts, logits)


def labeled_store(run_dir: Path, out: Path, make, what: str) -> tuple[list[str], np.ndarray, dict]:
    """A probe's texts and RUN's teacher logits on them (`teacher_on`), made once and kept in OUT-texts/ (texts.jsonl,
    logits.npy, stats.json) so that a re-run resumes: `make()` returns (texts, stats), and stats gains the teacher's
    seconds. Prints how sure the teacher is of them beside RUN's own synthetic texts."""
    import json

    from gendistill.compressor.annotate import CONFIDENT, load_annotations
    from gendistill.runtime.classifier import softmax

    store = out.with_name(out.name + "-texts")
    store.mkdir(parents=True, exist_ok=True)
    if not (store / "logits.npy").is_file():
        texts, stats = make()
        write_jsonl_atomic(store / "texts.jsonl", [{"text": t} for t in texts])
        logits, seconds = teacher_on(run_dir, texts, what)
        (store / "stats.json").write_text(json.dumps({**stats, "teacher_seconds": seconds}, indent=1))
        np.save(store / "logits.npy", logits)
    texts = [json.loads(line)["text"] for line in (store / "texts.jsonl").open()]
    logits, stats = np.load(store / "logits.npy"), json.loads((store / "stats.json").read_text())
    probabilities, default = softmax(logits), softmax(load_annotations(run_dir, "synthetic"))
    print(f"{len(texts)} {what}, {np.mean([len(t.split()) for t in texts]):.1f} words on average; teacher >= {CONFIDENT} sure of "
          f"{(probabilities.max(1) >= CONFIDENT).mean():.1%} (RUN's synthetic texts: {(default.max(1) >= CONFIDENT).mean():.1%}), "
          f"label counts {np.bincount(probabilities.argmax(1)).tolist()}; {json.dumps(stats)}")
    return texts, logits, stats


def probe_parser(count: int) -> argparse.ArgumentParser:
    """The arguments of the probes that make a store of texts (`labeled_store`): RUN, OUT, --count and --seed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=count)
    parser.add_argument("--seed", type=int, default=0)
    return parser
