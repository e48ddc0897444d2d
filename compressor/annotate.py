"""Stage `annotate`: the teacher's class logits for every synthetic text and every real split.

Saved as float32 arrays `<split>.npy` of shape [texts, labels]: logits, not probabilities (the student
takes their softmax at its own distillation temperature); the teacher's logits are calibrated (a
temperature fitted on dev, see the teacher stage). The teacher reads texts at its own input length
(teacher/settings.json). The dev and test logits also give the teacher's own scores in the report.

On CPU the teacher runs through onnxruntime in int8 (compressor/teacher_onnx.py) when that keeps the
torch teacher's accuracy on dev + test (2,200 texts in the demo), by the student export's accuracy rule
(`export.verify.accuracy_loss`): a loss of at most 0.5 points, or a larger one that a sign test cannot tell
from chance on the texts only one of the two gets right. The labeled texts' own logits (train, dev, test) always
come from torch, so the report's teacher is the torch teacher.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gendistill.compressor.rundir import begin_stage, finish_stage, load_split, read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic_rows
from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length
from gendistill.compressor.training import accuracy, resolve_device
from gendistill.runtime.classifier import softmax
from gendistill.runtime.settings import OnDevice

log = logging.getLogger(__name__)


@dataclass
class AnnotateSettings(OnDevice):
    PREFIX = "annotate_"

    batch_size: int = 64
    """Texts the teacher reads together (sorted by length, so little padding)."""
    engine: Literal["auto", "torch", "onnx-int8"] = "auto"
    """How the teacher runs: onnx-int8 (onnxruntime, about 2x faster on CPU), torch, or auto (onnx-int8 on CPU when it agrees with torch on the labeled texts)."""
    unlabeled: int = 0
    """Also annotate this many real unlabeled texts of the training pool: the benchmark's oracle student (GAL)."""

    def validate(self):
        self.at_least("batch_size", 1)
        self.at_least("unlabeled", 0)


SPLITS = ("train", "dev", "test")
CONFIDENT = 0.9
"""A soft label is confident when its largest probability is at least this (the report compares synthetic with test texts)."""


def run_annotate(settings: AnnotateSettings, run_dir: str | Path) -> dict:
    started = time.time()
    device = resolve_device(settings.device)
    model, tokenizer = load_teacher(run_dir, device)
    max_length = teacher_max_length(run_dir)
    out = begin_stage(run_dir, "annotate")
    texts = {split: load_split(run_dir, split) for split in SPLITS}
    targets = {split: texts[split][1] for split in SPLITS}
    texts = {split: texts[split][0] for split in SPLITS}
    synthetic_rows = load_synthetic_rows(run_dir)
    texts["synthetic"] = [row["text"] for row in synthetic_rows]
    if user_unlabeled(run_dir):  # --unlabeled FILE: every one of its texts is transfer text
        texts["unlabeled"] = load_split(run_dir, "unlabeled")[0]
    elif settings.unlabeled:
        texts["unlabeled"] = load_split(run_dir, "unlabeled")[0][: settings.unlabeled]
    logits, metrics = {}, {"engine": "torch"}
    for split in SPLITS:
        logits[split] = teacher_logits(model, tokenizer, texts[split], max_length, settings.batch_size, desc=f"annotate {split}")
    run = None
    if settings.engine != "torch" and device == "cpu" and any(len(texts[s]) for s in texts if s not in logits):
        run = _int8_engine(settings, model, tokenizer, texts, targets, logits, max_length, out / "onnx", metrics)
    for split, split_texts in texts.items():
        if split not in logits:
            tick = time.time()
            logits[split] = (run(split_texts, split) if run else
                             teacher_logits(model, tokenizer, split_texts, max_length, settings.batch_size, desc=f"annotate {split}"))
            if split == "synthetic":
                metrics["synthetic_texts_per_second"] = len(split_texts) / max(time.time() - tick, 1e-9)
        np.save(out / f"{split}.npy", logits[split])
        if split in targets:
            metrics[f"teacher_{split}_accuracy"] = accuracy(logits[split].argmax(1), targets[split])
        if split == "test" and len(logits[split]):
            metrics["test_confident_share"] = float((softmax(logits[split]).max(1) >= CONFIDENT).mean())
        if split == "synthetic" and len(logits[split]):
            probabilities = softmax(logits[split])
            predicted = probabilities.argmax(1)
            metrics["synthetic_mean_max_probability"] = float(probabilities.max(1).mean())
            metrics["synthetic_confident_share"] = float((probabilities.max(1) >= CONFIDENT).mean())
            metrics["synthetic_label_counts"] = np.bincount(predicted, minlength=probabilities.shape[1]).tolist()
            # Per predicted class: how sure the teacher is of the synthetic texts it puts there.
            metrics["synthetic_confidence_per_class"] = [float(probabilities[predicted == k, k].mean()) if (predicted == k).any() else None
                                                         for k in range(probabilities.shape[1])]
            if "prompted" in synthetic_rows[0]:  # a label-conditioned generator: how often the teacher gives the class asked for
                prompted = np.asarray([row["prompted"] for row in synthetic_rows])
                metrics["synthetic_prompted_agreement"] = float((predicted == prompted).mean())
    shutil.rmtree(out / "onnx", ignore_errors=True)
    metrics["texts"] = sum(len(t) for t in texts.values())
    metrics["seconds"] = time.time() - started
    metrics["texts_per_second"] = metrics["texts"] / max(metrics["seconds"], 1e-9)
    finish_stage(run_dir, "annotate", asdict(settings), metrics)
    return metrics


def _int8_engine(settings, model, tokenizer, texts, targets, logits, max_length, work: Path, metrics: dict):
    """Export the teacher, quantize it by each recipe in turn, check each on the labeled texts, and return a
    logits function for the first that passes (or for the last, when `onnx-int8` is asked explicitly); None
    when `auto` and none passes: then torch annotates."""
    import torch

    from gendistill.compressor.teacher_onnx import RECIPES, OnnxTeacher, export_teacher, quantize_teacher
    from gendistill.export.verify import MAX_INT8_ACCURACY_LOSS, accuracy_loss

    work.mkdir(exist_ok=True)
    tick = time.time()
    export_teacher(model, work / "teacher.onnx")
    labeled = texts["dev"] + texts["test"]
    reference = np.concatenate([logits["dev"], logits["test"]]).argmax(1)
    y = np.concatenate([targets["dev"], targets["test"]])
    attempts, engine = [], None
    for recipe in RECIPES:
        quantize_teacher(work / "teacher.onnx", work / f"teacher-{recipe}.onnx", recipe)
        engine = OnnxTeacher(work / f"teacher-{recipe}.onnx", tokenizer, torch.get_num_threads())
        quantized = engine.logits(labeled, max_length, settings.batch_size, desc=f"int8 check ({recipe})").argmax(1)
        loss = accuracy_loss(reference == y, quantized == y)  # the student export's accuracy rule, export/verify.py
        attempts.append({"recipe": recipe, "accuracy_loss": loss["loss"], "texts_worse": loss["worse"], "texts_better": loss["better"],
                         "loss_p_value": loss["p_value"], "argmax_agreement": accuracy(quantized, reference), "passed": not loss["refused"]})
        if attempts[-1]["passed"]:
            break
    metrics["int8_check"] = {"texts": len(labeled), "attempts": attempts, **attempts[-1], "export_seconds": time.time() - tick}
    if settings.engine == "auto" and not attempts[-1]["passed"]:
        log.info("The int8 teacher lost %.1f points of accuracy on dev + test with each recipe (more than %.1f, and more than chance); "
                 "annotating with torch instead.", 100 * min(a["accuracy_loss"] for a in attempts), 100 * MAX_INT8_ACCURACY_LOSS)
        return None
    metrics["engine"] = "onnx-int8"
    return lambda split_texts, split: engine.logits(split_texts, max_length, settings.batch_size, desc=f"annotate {split} (int8)")


def user_unlabeled(run_dir: str | Path) -> bool:
    """Did the user give real unlabeled texts (`--unlabeled FILE`)? Then they are transfer text."""
    return bool(read_json(stage_path(run_dir, "data") / "settings.json").get("unlabeled"))


def load_annotations(run_dir: str | Path, split: str) -> np.ndarray:
    return np.load(stage_path(run_dir, "annotate") / f"{split}.npy")
