"""Stage `annotate`: the teacher's class logits for every synthetic text and every real split.

Saved as float32 arrays `<split>.npy` of shape [texts, labels]: logits, not probabilities (the student
takes their softmax at its own distillation temperature). The teacher reads texts at the input length
it was fine-tuned with (teacher/settings.json). The dev and test logits also give the teacher's own
scores in the report, without a second pass.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gendistill.compressor.rundir import begin_stage, finish_stage, load_split, read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits
from gendistill.compressor.training import accuracy, resolve_device
from gendistill.runtime.classifier import softmax
from gendistill.runtime.settings import OnDevice


@dataclass
class AnnotateSettings(OnDevice):
    PREFIX = "annotate_"

    batch_size: int = 64
    """Texts the teacher reads together (sorted by length, so little padding)."""
    unlabeled: int = 0
    """Also annotate this many real unlabeled texts of the training pool: the benchmark's oracle student (GAL)."""

    def validate(self):
        self.at_least("batch_size", 1)
        self.at_least("unlabeled", 0)


SPLITS = ("train", "dev", "test")


def run_annotate(settings: AnnotateSettings, run_dir: str | Path) -> dict:
    started = time.time()
    model, tokenizer = load_teacher(run_dir, resolve_device(settings.device))
    max_length = read_json(stage_path(run_dir, "teacher") / "settings.json")["max_length"]
    out = begin_stage(run_dir, "annotate")
    texts = {"synthetic": load_synthetic(run_dir)}
    targets = {}
    for split in SPLITS:
        texts[split], targets[split] = load_split(run_dir, split)
    if settings.unlabeled:
        texts["unlabeled"] = load_split(run_dir, "unlabeled")[0][: settings.unlabeled]
    metrics = {}
    for split, split_texts in texts.items():
        logits = teacher_logits(model, tokenizer, split_texts, max_length, settings.batch_size, desc=f"annotate {split}")
        np.save(out / f"{split}.npy", logits)
        if split in targets:
            metrics[f"teacher_{split}_accuracy"] = accuracy(logits.argmax(1), targets[split])
        if split == "synthetic" and len(logits):
            metrics["synthetic_mean_max_probability"] = float(softmax(logits).max(1).mean())
            metrics["synthetic_label_counts"] = np.bincount(logits.argmax(1), minlength=logits.shape[1]).tolist()
    metrics["seconds"] = time.time() - started
    finish_stage(run_dir, "annotate", asdict(settings), metrics)
    return metrics


def load_annotations(run_dir: str | Path, split: str) -> np.ndarray:
    return np.load(stage_path(run_dir, "annotate") / f"{split}.npy")
