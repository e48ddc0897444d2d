"""Stage `annotate`: the teacher's class logits for every synthetic text and every real split.

Saved as float32 arrays `<split>.npy` of shape [texts, labels]: logits, not probabilities (the student
takes their softmax at its own distillation temperature); the teacher's logits are calibrated (a
temperature fitted on dev, see the teacher stage). The teacher reads texts at its own input length
(teacher/settings.json). The dev and test logits also give the teacher's own scores in the report.

On CPU the teacher runs through a faster engine when one passes three checks against the fp32 torch teacher. Tried
in order (`_engines`), the first that passes annotates:
1. torch under bfloat16 autocast (`torch-bf16`), on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX);
2. onnxruntime in int8 (compressor/teacher_onnx.py), by each of its recipes.
The checks:
- fidelity on a seeded sample of the transfer texts (synthetic and unlabeled, `TRANSFER_CHECK_TEXTS`): the mean
  |probability difference| at most `MAX_TRANSFER_PROBABILITY_DIFFERENCE`. The labeled texts are mostly ones the
  teacher is sure of; the transfer texts the student learns from sit near the decision boundary far more often,
  where int8 flips labels the accuracy check cannot see. Measured on the demo's split
  (benchmarks/student/RESULTS.md, "Which int8 recipe annotated the texts"): both int8 recipes passed the accuracy
  check, but on 2,000 synthetic texts `ffn-output-fp32` was 0.035 from torch (96.1% argmax agreement) and `ffn-fp32`
  0.013 (98.3%), and students on the former's labels were 1.7 points lower (70.6 against 72.3, 3 seeds);
- speed on that sample: faster than fp32 torch (bfloat16 autocast is slow where the CPU emulates it);
- accuracy on the labeled texts, by the student export's accuracy rule (`export.verify.accuracy_loss`): a loss of at
  most 0.5 points, or a larger one that a sign test cannot tell from chance on the texts only one of the two gets
  right. int8 is judged on dev + test (2,200 texts in the demo); bfloat16, which only rounds the same arithmetic, on
  dev alone (`LABELED_CHECK`), so that the test split need not run through fp32 torch as well: the engine that passes
  then annotates test too (in the demo, fp32 torch on test took 76 of the stage's 262 s, and bfloat16 had
  agreed with it on 99.9% of dev + test, one text worse and one better).
Measured side by side on the demo's teacher (all-mpnet-base-v2 fine-tuned, 640 synthetic texts, 2 threads;
`python benchmarks/teacher/engines.py`, benchmarks/teacher/engines.json): torch-bf16 1.9x fp32 torch's texts/s at a
mean |probability difference| of 0.001 (99.8% argmax agreement), int8 `ffn-fp32` 1.35x at 0.013 (98.4%).
`auto` tries no faster engine when the transfer texts are too few to repay the check: it runs the engine on the
transfer sample and on dev + test (and int8 first exports and quantizes the teacher), which only pays off when the
fastest engine this CPU can have (`expected_speedup`: bfloat16's 1.9x where the CPU has it natively, int8's 1.35x with
int8 dot-product instructions, 1.11x without) saves more on the remaining transfer texts than that costs. A small run (a
few hundred synthetic texts) then annotates in fp32 torch at once; the demo's 10,000 synthetic texts are checked where
the CPU has bfloat16 or int8 dot products, and not on a CPU with AVX2 alone (there the check took 222 s of a 539 s
stage whose int8 annotation saved about 30 s).
fp32 torch computes the checks' references and nothing more: the dev logits, the sampled transfer texts' (kept as
their annotation: the engine does not annotate them again) and, where int8 is checked, the test logits. The engine
that passes annotates everything else: train, test under bfloat16, and the other transfer texts. Where bfloat16
passes, the report's teacher scores on test are its bfloat16 run's.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gendistill.compressor.rundir import (begin_stage, finish_stage, kill_point, load_split, read_json, remove_temporaries, resumable,
                                          stage_path, upstream_ids)
from gendistill.compressor.synthesize import load_synthetic_rows
from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length
from gendistill.compressor.training import accuracy, int8_dot_product, native_bf16, resolve_device
from gendistill.runtime.bundle import write_atomic, write_json_atomic
from gendistill.runtime.classifier import softmax
from gendistill.runtime.settings import OnDevice

log = logging.getLogger(__name__)


@dataclass
class AnnotateSettings(OnDevice):
    PREFIX = "annotate_"

    batch_size: int = 64
    """Texts the teacher reads together (sorted by length, so little padding)."""
    engine: Literal["auto", "torch", "torch-bf16", "onnx-int8"] = "auto"
    """How the teacher runs on CPU: torch (fp32), torch-bf16 (bfloat16 autocast, about 1.9x faster where the CPU has native bfloat16), onnx-int8 (onnxruntime, about 1.35x), or auto (the first of torch-bf16 and onnx-int8's recipes that follows fp32 torch closely and is faster; module docstring)."""
    unlabeled: int = 0
    """Also annotate this many real unlabeled texts of the training pool: the benchmark's oracle student (GAL)."""

    def validate(self):
        self.at_least("batch_size", 1)
        self.at_least("unlabeled", 0)


SPLITS = ("train", "dev", "test")
TRANSFER_CHECK_TEXTS = 500
"""Transfer texts (a seeded sample) on which a faster engine's probabilities are compared with fp32 torch's."""
MAX_TRANSFER_PROBABILITY_DIFFERENCE = 0.02
"""The most mean |probability difference| from torch on those texts a faster engine may have (measured: 0.013
for a recipe whose labels trained students as well as torch's, 0.035 for one whose students lost 1.7 points)."""


def probability_difference(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean |probability difference| of `logits` from `reference` logits, over texts and classes: the fidelity measure
    a faster engine is held to (`MAX_TRANSFER_PROBABILITY_DIFFERENCE`)."""
    return float(np.abs(softmax(logits) - softmax(reference)).mean())
CHUNK_TEXTS = 4096
"""Transfer texts annotated and saved together (`Chunks`): a kill costs at most this many (about 5 minutes in fp32 torch
on 2 cores without AVX-512)."""
ENGINE_SPEEDUP = {"torch-bf16": 1.9, "onnx-int8": 1.35, "onnx-int8 without int8 dot products": 1.11}
"""Each faster engine's texts/s over fp32 torch's, measured side by side on a demo's teacher (2 threads): torch-bf16 and
onnx-int8 (recipe ffn-fp32) on an Intel Xeon with AMX (benchmarks/teacher/engines.json), onnx-int8 on an AMD EPYC with
AVX2 alone (engines-avx2.json: 31.1 texts/s against fp32 torch's 28.0 on the same texts, and 26.3 when fp32 torch ran
first on a cold machine, as it did on the Xeon), where onnxruntime multiplies int8 without dot-product instructions."""


def expected_speedup() -> float:
    """The speedup over fp32 torch of the fastest engine `auto` tries on this CPU (`ENGINE_SPEEDUP`): bfloat16 where the
    CPU has it natively, else int8, which gains little without int8 dot-product instructions."""
    if native_bf16():
        return ENGINE_SPEEDUP["torch-bf16"]
    return ENGINE_SPEEDUP["onnx-int8" if int8_dot_product() else "onnx-int8 without int8 dot products"]


LABELED_CHECK = {"torch-bf16": ("dev",), "onnx-int8": ("dev", "test")}
"""The labeled splits on which each faster engine's accuracy is checked against fp32 torch (module docstring)."""
CONFIDENT = 0.9
"""A soft label is confident when its largest probability is at least this (the report compares synthetic with test texts)."""


def run_annotate(settings: AnnotateSettings, run_dir: str | Path) -> dict:
    started = time.time()
    device = resolve_device(settings.device)
    model, tokenizer = load_teacher(run_dir, device)
    max_length = teacher_max_length(run_dir)
    out = begin_stage(run_dir, "annotate", keep_partial=True)
    remove_temporaries(out)  # a chunk whose write a kill cut off
    chunks = Chunks(out, {"settings": asdict(settings), "upstream": upstream_ids(run_dir, "annotate")})
    texts = {split: load_split(run_dir, split) for split in SPLITS}
    targets = {split: texts[split][1] for split in SPLITS}
    texts = {split: texts[split][0] for split in SPLITS}
    synthetic_rows = load_synthetic_rows(run_dir)
    texts["synthetic"] = [row["text"] for row in synthetic_rows]
    if user_unlabeled(run_dir):  # --unlabeled FILE: every one of its texts is transfer text
        texts["unlabeled"] = load_split(run_dir, "unlabeled")[0]
    elif settings.unlabeled:
        texts["unlabeled"] = load_split(run_dir, "unlabeled")[0][: settings.unlabeled]
    logits, metrics = {}, {"engine": "torch", "device": device}

    def torch_logits(part: list[str], desc: str) -> np.ndarray:  # the fp32 torch teacher
        return teacher_logits(model, tokenizer, part, max_length, settings.batch_size, desc=desc)

    def fp32(split: str) -> np.ndarray:  # fp32 torch's logits of a labeled split, computed once, when first needed
        if split not in logits:
            logits[split] = torch_logits(texts[split], f"annotate {split}")
        return logits[split]

    fp32("dev")  # the reference of every check
    run, checked = None, {}
    transfer = sum(len(texts[s]) for s in texts if s not in SPLITS)
    if settings.engine != "torch" and device == "cpu" and transfer:
        checked_texts = min(transfer, TRANSFER_CHECK_TEXTS) + len(texts["dev"]) + len(texts["test"])
        if chunks.engine == {"engine": "torch"}:  # resumed: fp32 torch annotated the chunks already made, so it goes on
            metrics["engine_check"] = chunks.engine_check
        elif settings.engine == "auto" and not worth_checking(transfer, checked_texts, speedup := expected_speedup()):
            metrics["engine_check"] = {"skipped": f"{transfer} transfer texts are too few to repay checking a faster engine on {checked_texts} texts "
                                                  f"(at best {speedup:g}x fp32 torch on this CPU)"}
        else:
            run, checked = _fast_engine(settings, model, tokenizer, texts, targets, fp32, max_length, out / "onnx", metrics)
    recipe = (metrics.get("engine_check") or {}).get("recipe") if metrics["engine"] == "onnx-int8" else None
    # "checked_sample": the chunks leave out the transfer texts of the check (chunks made before they did are not reused).
    chunks.use_engine({"engine": metrics["engine"], **({"recipe": recipe} if recipe else {}), **({"checked_sample": "fp32 torch"} if checked else {})},
                      metrics.get("engine_check"))
    for split in ("train", "test"):  # (int8's check computed test in fp32) the engine chosen annotates them, in one pass
        if split not in logits:
            logits[split] = run(texts[split], f"annotate {split} ({metrics['engine']})") if run else fp32(split)
    for split, split_texts in texts.items():
        if split not in logits:  # the transfer texts, a chunk at a time
            index, reference = checked.get(split, ([], None))  # the checked sample: torch's own logits, computed already
            rest = np.setdiff1d(np.arange(len(split_texts)), index)
            part = chunks.annotate(split, [split_texts[i] for i in rest], run or torch_logits, f"annotate {split} ({metrics['engine']})")
            logits[split] = np.empty((len(split_texts), part.shape[1]), part.dtype)
            logits[split][rest] = part
            if len(index):
                logits[split][index] = reference
            annotated = len(rest) - chunks.resumed[split]  # by this run
            if split == "synthetic" and annotated:
                metrics["synthetic_texts_per_second"] = annotated / max(chunks.seconds[split], 1e-9)
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
    chunks.remove()
    metrics["texts"] = sum(len(t) for t in texts.values())
    metrics["resumed_texts"] = sum(chunks.resumed.values())  # annotated by an earlier, interrupted run
    metrics["seconds"] = time.time() - started
    metrics["texts_per_second"] = (metrics["texts"] - metrics["resumed_texts"]) / max(metrics["seconds"], 1e-9)
    finish_stage(run_dir, "annotate", asdict(settings), metrics)
    return metrics


class Chunks:
    """The transfer texts' logits, annotated and saved `CHUNK_TEXTS` at a time in annotate.partial/
    (`<split>-chunk-NNNNN.npy`), so a killed run loses at most one chunk and resumes from the rest.

    chunks.json records what the chunks were made from (the stage's settings and upstream stages) and by which
    engine; chunks of anything else are discarded, never mixed in."""

    def __init__(self, directory: Path, marker: dict):
        self.dir, self.marker_path, self.marker = directory, directory / "chunks.json", marker
        saved = resumable(self.marker_path, marker)
        if saved is None:
            self.remove()
            saved = {}
        self.engine, self.engine_check = saved.get("engine"), saved.get("engine_check")
        self.resumed, self.seconds = {}, {}

    def use_engine(self, engine: dict, engine_check: dict | None) -> None:
        """The engine that annotates from here on; chunks another engine made are discarded."""
        if self.engine is not None and self.engine != engine:
            log.info("Discarding annotation chunks made by %s: this run annotates with %s.", self.engine, engine)
            self.remove()
        if self.engine != engine:
            write_json_atomic(self.marker_path, {**self.marker, "engine": engine, "engine_check": engine_check})
            self.engine, self.engine_check = engine, engine_check

    def annotate(self, split: str, texts: list[str], logits_of, desc: str) -> np.ndarray:
        """Logits of `texts` by `logits_of(texts, progress label)`, chunk by chunk, reusing the chunks on disk."""
        pieces = [texts[start: start + CHUNK_TEXTS] for start in range(0, len(texts), CHUNK_TEXTS)]
        paths = [self.dir / f"{split}-chunk-{i:05d}.npy" for i in range(len(pieces))]
        parts = [np.load(path) if path.is_file() else None for path in paths]
        parts = [part if part is not None and len(part) == len(piece) else None for part, piece in zip(parts, pieces)]
        self.resumed[split] = sum(len(part) for part in parts if part is not None)
        if self.resumed[split]:
            log.info("Resuming annotation of %s: %d of %d texts annotated already.", split, self.resumed[split], len(texts))
        tick = time.time()
        for i, (piece, path) in enumerate(zip(pieces, paths)):
            if parts[i] is None:
                parts[i] = logits_of(piece, f"{desc} {i + 1}/{len(pieces)}" if len(pieces) > 1 else desc)
                write_atomic(path, lambda handle, part=parts[i]: np.save(handle, part), binary=True)
                kill_point(f"annotate:written:{split}:{i}")
        self.seconds[split] = time.time() - tick
        return np.concatenate(parts) if parts else logits_of([], desc)

    def remove(self) -> None:
        """Remove every chunk and chunks.json (discarded, or the stage is done)."""
        for path in [*self.dir.glob("*-chunk-*.npy"), self.marker_path]:
            path.unlink(missing_ok=True)


def worth_checking(transfer: int, checked: int, speedup: float) -> bool:
    """Can a faster engine repay its check? `transfer` texts to annotate, `checked` texts the check runs through the
    engine, which is `speedup` times fp32 torch: the check pays only when n / speedup + c / speedup < n, that is
    n * (speedup - 1) > c. `run_annotate` counts c as the transfer sample, dev and test for every engine (int8's labeled
    check; bfloat16's runs on dev alone, so for bfloat16 the count is high and errs toward skipping the check), and
    leaves out int8's export and quantization of the teacher (18 s on the AVX2 EPYC, and 11 s more a recipe refused),
    so it errs toward checking there."""
    return transfer * (speedup - 1) > checked


def _transfer_sample(texts: dict[str, list[str]], size: int) -> dict[str, np.ndarray]:
    """A seeded sample of `size` transfer texts (synthetic, then unlabeled), as {split: sorted indices}."""
    splits = [split for split in texts if split not in SPLITS and texts[split]]
    total = sum(len(texts[split]) for split in splits)
    chosen = np.sort(np.random.RandomState(0).choice(total, min(size, total), replace=False))
    sample, offset = {}, 0
    for split in splits:
        n = len(texts[split])
        sample[split] = chosen[(chosen >= offset) & (chosen < offset + n)] - offset
        offset += n
    return sample


def _engines(engine: str, model, tokenizer, max_length: int, batch_size: int, work: Path):
    """The faster ways to run the teacher that `engine` allows, in the order tried, as (description, logits function
    of (texts, progress label)); lazily, so the teacher is exported to ONNX only when int8 is reached."""
    import torch

    if engine == "torch-bf16" or (engine == "auto" and native_bf16()):
        yield {"engine": "torch-bf16"}, lambda texts, desc: teacher_logits(model, tokenizer, texts, max_length, batch_size, desc, bf16=True)
    if engine in ("auto", "onnx-int8"):
        from gendistill.compressor.teacher_onnx import RECIPES, OnnxTeacher, export_teacher, quantize_teacher

        work.mkdir(exist_ok=True)
        export_teacher(model, work / "teacher.onnx")
        for recipe in RECIPES:
            quantize_teacher(work / "teacher.onnx", work / f"teacher-{recipe}.onnx", recipe)
            session = OnnxTeacher(work / f"teacher-{recipe}.onnx", tokenizer, torch.get_num_threads())
            yield {"engine": "onnx-int8", "recipe": recipe}, (lambda texts, desc, session=session: session.logits(texts, max_length, batch_size, desc))


def _fast_engine(settings, model, tokenizer, texts, targets, fp32, max_length, work: Path, metrics: dict):
    """Try each faster engine in turn (`_engines`), check it against fp32 torch (module docstring: probabilities and
    speed on a sample of the transfer texts, then, if they pass, accuracy on the labeled splits of `LABELED_CHECK`,
    whose fp32 logits `fp32(split)` gives), and return the logits
    function of the first that passes (or of the last tried, when an engine is asked for by name), or None when
    `auto` and none passes (then fp32 torch annotates); and torch's logits of the checked sample, as
    {split: (indices, logits)}."""
    from gendistill.export.verify import MAX_INT8_ACCURACY_LOSS, accuracy_loss

    started = time.time()
    sample = _transfer_sample(texts, TRANSFER_CHECK_TEXTS)
    transfer = [texts[split][i] for split, index in sample.items() for i in index]
    tick = time.time()
    transfer_torch = teacher_logits(model, tokenizer, transfer, max_length, settings.batch_size, desc="engine check (fp32 torch, transfer texts)")
    torch_rate = len(transfer) / max(time.time() - tick, 1e-9)
    attempts, run = [], None
    for attempt, run in _engines(settings.engine, model, tokenizer, max_length, settings.batch_size, work):
        name = attempt.get("recipe", attempt["engine"])
        # The transfer sample first: it is the cheaper check (500 texts against dev + test's 2,200 in the demo) and
        # the one that refused int8's ffn-output-fp32 in both runs measured, so a refused engine skips the labeled texts.
        tick = time.time()
        on_transfer = run(transfer, f"engine check ({name}, transfer texts)")
        rate = len(transfer) / max(time.time() - tick, 1e-9)
        difference = probability_difference(on_transfer, transfer_torch) if transfer else 0.0
        attempt.update({"transfer_texts_per_second": rate, "transfer_probability_difference": difference,
                        "transfer_argmax_agreement": accuracy(on_transfer.argmax(1), transfer_torch.argmax(1)) if transfer else None,
                        "passed": difference <= MAX_TRANSFER_PROBABILITY_DIFFERENCE and rate > torch_rate})
        attempts.append(attempt)
        if not attempt["passed"]:
            continue
        splits = LABELED_CHECK[attempt["engine"]]
        labeled = [text for split in splits for text in texts[split]]
        reference = np.concatenate([fp32(split) for split in splits]).argmax(1)
        y = np.concatenate([targets[split] for split in splits])
        on_labeled = run(labeled, f"engine check ({name}, {' + '.join(splits)})").argmax(1)
        loss = accuracy_loss(reference == y, on_labeled == y)  # the student export's accuracy rule, export/verify.py
        attempt.update({"labeled_splits": list(splits), "labeled_texts": len(labeled), "accuracy_loss": loss["loss"],
                        "texts_worse": loss["worse"], "texts_better": loss["better"], "loss_p_value": loss["p_value"],
                        "argmax_agreement": accuracy(on_labeled, reference), "passed": not loss["refused"]})
        if attempt["passed"]:
            break
    if not attempts:  # auto on a CPU without native bfloat16, or nothing else allowed: nothing to check
        return None, {}
    metrics["engine_check"] = {"transfer_texts": len(transfer), "torch_transfer_texts_per_second": torch_rate,
                               "attempts": attempts, **attempts[-1], "seconds": time.time() - started}
    if settings.engine == "auto" and not attempts[-1]["passed"]:
        log.info("No faster engine passed its check against fp32 torch (at most %.1f points lost on the labeled texts, a mean probability "
                 "difference of at most %.3f on %d transfer texts, and faster); annotating with fp32 torch instead.",
                 100 * MAX_INT8_ACCURACY_LOSS, MAX_TRANSFER_PROBABILITY_DIFFERENCE, len(transfer))
        return None, {}
    metrics["engine"] = attempts[-1]["engine"]
    offsets = np.cumsum([0] + [len(index) for index in sample.values()])
    checked = {split: (index, transfer_torch[offsets[i]: offsets[i + 1]]) for i, (split, index) in enumerate(sample.items())}
    return run, checked


def user_unlabeled(run_dir: str | Path) -> bool:
    """Did the user give real unlabeled texts (`--unlabeled FILE`)? Then they are transfer text."""
    return bool(read_json(stage_path(run_dir, "data") / "settings.json").get("unlabeled"))


def load_annotations(run_dir: str | Path, split: str) -> np.ndarray:
    return np.load(stage_path(run_dir, "annotate") / f"{split}.npy")
