"""Stage `teacher`: a large classifier on the labeled texts, with calibrated soft labels.

Two recipes (`--teacher-recipe`), both on the encoder used the way it was trained (compressor/encoder.py):
- `frozen`: the encoder untouched; a logistic-regression head on its pooled vectors, C chosen by
  cross-validation on the labeled texts. Deterministic, and no gradient through 110M parameters.
- `finetune`: the whole encoder trained with the head (started from the frozen recipe's head, so epoch 0
  is the frozen teacher), the epoch with the lowest dev cross-entropy kept; no epoch is kept that does not
  beat epoch 0 on it.
An already fine-tuned classifier (`--teacher-model`) skips both. Then a temperature is fitted on dev so
the soft labels are calibrated probabilities. Saved to `teacher/model/`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from gendistill.compressor.assets import EMBEDDED, load_hf, resolve_model
from gendistill.compressor.encoder import batched, build_teacher, fit_head, fit_temperature, load_teacher_dir, mean_nll, prior_shift, save_teacher
from gendistill.compressor.rundir import begin_stage, finish_stage, load_labels, load_split, read_json, stage_path
from gendistill.compressor.training import BestCheckpoint, accuracy, fused, native_bf16, progress, resolve_device, seed_everything, torch_threads
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.settings import OnDevice, Seeded

log = logging.getLogger(__name__)


@dataclass
class TeacherSettings(Seeded, OnDevice):
    PREFIX = "teacher_"
    NAMES = {"model": "teacher", "finetuned": "teacher_model", "max_length": "max_length"}

    model: str = EMBEDDED
    """Teacher encoder: `embedded` (the packaged all-mpnet-base-v2), `embedded-minilm` (the packaged all-MiniLM-L6-v2, 5x smaller), or any hub name or path (a sentence-transformers folder keeps its pooling)."""
    recipe: Literal["frozen", "finetune"] = "finetune"
    """finetune: the whole encoder trained, starting from the frozen recipe's head; frozen: encoder untouched + logistic-regression head (C by cross-validation), about 10x faster. A checkpoint that is not a sentence-transformers folder has no declared pooling and is always fine-tuned with its own head. Measured with all-mpnet-base-v2 on rotten-tomatoes, 3 seeds: finetune 87.4 ± 0.5%, frozen 83.2 ± 0.9% (benchmarks/teacher)."""
    finetuned: str | None = None
    """An already fine-tuned classifier (path or hub name) to use as the teacher; skips teacher training."""
    epochs: int = 4
    """finetune: epochs at most (the epoch with the lowest dev cross-entropy is kept; early stopping on it)."""
    lr: float = 2e-5
    """finetune: learning rate of the encoder (AdamW, linear warm-up and decay); the head learns at 10x."""
    batch_size: int = 16
    """finetune: texts per step (the frozen recipe encodes in batches of 64)."""
    max_length: int = 0
    """Teacher input length in tokens (the student reads twice this by default: --student-max-length); 0 = auto: 128, or 256 when more than a tenth of the labeled training texts are longer than 128 teacher tokens (bbc-news articles, frozen all-mpnet-base-v2 over 3 seeds: 97.3 ± 0.9% at 256, 97.7 ± 1.0% at 512 for 2.2x the time, a gain inside the spread; 97.2% at 128 on one seed). A finished stage made with a set length is reused by auto."""
    patience: int = 3
    """finetune: stop after this many epochs without a lower dev cross-entropy."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """finetune: bf16 trains under torch's bfloat16 autocast (weights, optimizer, evaluation and calibration stay fp32); auto: bf16 on a CPU with native bfloat16 (AVX512-BF16 or AMX), else fp32. Measured with all-mpnet-base-v2 on rotten-tomatoes, 3 seeds: the same teacher (87.4 ± 0.6% against 87.4 ± 0.5% in fp32, the same epochs kept, per seed within 0.2 point; benchmarks/teacher); a training step 1.8x faster side by side (benchmarks/teacher/engines.json), the stage 144 s against 204 s (evaluation stays fp32)."""
    prior: Literal["train", "pool"] = "pool"
    """The class prior the teacher's soft labels assume: the training pool's class shares (pool: when --per-class drew an even sample from an uneven pool, the teacher's log-probabilities are shifted by log(pool share / sample share), its temperature fitted with the shift, and the student's true-label loss shifted alike: --logit-adjustment), or the labeled sample's (train). Dev and test keep the pool's shares, as new texts will. On rotten-tomatoes cut to 80 / 20% (3 seeds, benchmarks/shapes) pool lifted the student on every seed, 79.5% against 73.2 (macro-F1 61.3 against 63.8), and steadied the teacher (89.1 ± 0.4 against 88.1 ± 2.1); on the demo's 58 / 42 pool it was level (69.9 ± 1.0 against 70.3 ± 0.3, 3 student seeds; benchmarks/student). An even pool gives no shift."""

    def validate(self):
        self.at_least("epochs", 1)
        self.positive("lr")
        self.at_least("batch_size", 1)
        if self.max_length != 0:
            self.at_least("max_length", 8)
        self.at_least("patience", 1)


AUTO_LENGTHS = (128, 256)
"""What `max_length` 0 chooses from: the first that more than 90% of the labeled training texts fit, else the last."""


def auto_max_length(tokenizer, texts: list[str]) -> int:
    """`max_length` 0 resolved for these texts (at most what the encoder reads)."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    fitting = [n for n in AUTO_LENGTHS if np.mean(np.asarray(lengths) > n) <= 0.1] if lengths else AUTO_LENGTHS
    longest = getattr(tokenizer, "model_max_length", None) or AUTO_LENGTHS[-1]
    return min(fitting[0] if fitting else AUTO_LENGTHS[-1], longest)


def teacher_max_length(run_dir: str | Path) -> int:
    """The input length a finished teacher stage used (auto resolved)."""
    return read_json(stage_path(run_dir, "teacher") / "settings.json")["max_length"]


def load_teacher(run_dir: str | Path, device: str = "cpu"):
    """The teacher (calibrated logits) and its tokenizer from a finished run."""
    return load_teacher_dir(stage_path(run_dir, "teacher") / "model", device)


def _run(model, tokenizer, texts: list[str], max_length: int, batch_size: int, desc: str | None, method: str,
         bf16: bool = False, workers: int | None = None) -> np.ndarray:
    """`model.<method>` (forward: calibrated logits; embed: pooled vectors) over `texts`, in batches sorted by length;
    `bf16`: under torch's bfloat16 autocast (annotate's faster engine, checked there against fp32).

    `workers`: batches computed side by side, one torch thread each, instead of one batch over every thread; the same
    logits either way. The default is side by side for bfloat16 on CPU, where it measured 1.13x the texts/s on 2 AMX
    cores (every one of 3 alternated rounds faster: 56.8-63.3 against 49.9-56.0), and one pass for fp32 (1.04x, rounds
    from 0.98 to 1.12: inside the noise); `python benchmarks/teacher/workers.py RUN_DIR`, benchmarks/teacher/workers.json."""
    import threading

    import torch

    device = next(model.parameters()).device
    width = model.encoder.config.hidden_size if method == "embed" else (model.head.out_features if model.head else model.encoder.config.num_labels)
    if workers is None:
        workers = torch.get_num_threads() if bf16 and device.type == "cpu" else 1
    tokenizing = threading.Lock()  # a fast tokenizer sets its padding and truncation per call: one call at a time

    def compute(batch):
        with tokenizing:
            encoded = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
        # inference_mode and autocast are per thread: entered in the thread that runs the batch.
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return getattr(model, method)(encoded["input_ids"], encoded["attention_mask"]).float().cpu().numpy()

    with torch_threads(1 if workers > 1 else None):
        return batched(texts, batch_size, width, compute, desc, workers)


def teacher_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, desc: str | None = None,
                   bf16: bool = False) -> np.ndarray:
    """Calibrated class logits for `texts`, batched by length so padding is small (`bf16`: see `_run`)."""
    model.eval()
    return _run(model, tokenizer, texts, max_length, batch_size, desc, "forward", bf16)


def _align_labels(model, labels: list[str]):
    """Reorder a fine-tuned classifier's outputs to our label order when its config names them."""
    classifier = model.encoder
    id2label = {int(k): v for k, v in (classifier.config.id2label or {}).items()}
    if classifier.config.num_labels != len(labels):
        raise GendistillError(
            f"The given teacher has {classifier.config.num_labels} outputs but the data has {len(labels)} labels; pass a classifier fine-tuned on these labels."
        )
    names = [id2label.get(i) for i in range(len(labels))]
    if set(names) == set(labels) and names != labels:
        import torch

        order = [names.index(label) for label in labels]
        head = classifier.classifier if hasattr(classifier, "classifier") else classifier.get_output_embeddings()
        with torch.no_grad():
            head.weight.copy_(head.weight[order].clone())
            head.bias.copy_(head.bias[order].clone())
    classifier.config.id2label = dict(enumerate(labels))
    classifier.config.label2id = {label: i for i, label in enumerate(labels)}


def class_prior_shift(run_dir: str | Path, labels: list[str]) -> np.ndarray:
    """`prior_shift` from the labeled sample's class counts to the training pool's (the data stage's metrics)."""
    metrics = read_json(stage_path(run_dir, "data") / "metrics.json")
    if "pool_per_class" not in metrics:
        raise GendistillError("This run's data stage predates --teacher-prior pool (it did not count the pool's classes); re-run it with --from data.")
    return prior_shift([metrics["train_per_class"][label] for label in labels], [metrics["pool_per_class"][label] for label in labels])


def fit_frozen_head(model, tokenizer, settings: TeacherSettings, texts: list[str], targets) -> float:
    """The frozen recipe: logistic regression on the encoder's pooled vectors; sets the head, returns C."""
    import torch

    features = _run(model, tokenizer, texts, settings.max_length, 64, "teacher: encode labeled texts", "embed")
    weight, bias, c = fit_head(features, targets, settings.seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    return c


def training_precision(settings: TeacherSettings, device: str) -> str:
    """`precision` resolved: auto is bf16 on a CPU with native bfloat16, else fp32."""
    if settings.precision != "auto":
        return settings.precision
    return "bf16" if device == "cpu" and native_bf16() else "fp32"


def _finetune(model, tokenizer, settings: TeacherSettings, train_texts, train_y, dev_texts, dev_y, device, history, on_epoch=None) -> int:
    """Train encoder + head with cross-entropy; the epoch with the lowest dev loss is kept, epoch 0 (the start) included.
    `on_epoch(epoch, model, tokenizer)` is called after each epoch's dev score, epoch 0 included (benchmarks/teacher/epochs.py)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    def dev_scores():  # (accuracy, cross-entropy) of the uncalibrated logits on dev
        logits = teacher_logits(model, tokenizer, dev_texts, settings.max_length)
        return accuracy(logits.argmax(1), dev_y), mean_nll(logits, dev_y)

    groups = [{"params": model.encoder.parameters(), "lr": settings.lr}]
    if model.head is not None:
        groups.append({"params": model.head.parameters(), "lr": 10 * settings.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01, fused=fused(device))
    steps_per_epoch = (len(train_texts) + settings.batch_size - 1) // settings.batch_size
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps_per_epoch * settings.epochs), steps_per_epoch * settings.epochs)
    rng = torch.Generator().manual_seed(settings.seed)
    # The epoch kept is the one with the lowest dev cross-entropy. Dev accuracy on 200 texts moves in 0.5-point steps
    # and kept a barely trained epoch on one seed in three; dev loss sees confidence too (benchmarks/teacher/epochs.py:
    # 87.3 ± 0.6 test accuracy against 86.5 ± 1.7 by dev accuracy, rotten-tomatoes, 3 seeds).
    if model.head is not None:  # epoch 0 is the frozen recipe's teacher: no epoch worse than it on dev is kept
        accuracy0, loss0 = dev_scores()
        history.append({"epoch": 0, "dev_accuracy": accuracy0, "dev_loss": loss0})
        if on_epoch:
            on_epoch(0, model, tokenizer)
        best = BestCheckpoint(model, higher_is_better=False, patience=settings.patience, initial=loss0, keep_initial=True)
    else:  # a checkpoint's own, freshly initialised head: no untrained start worth keeping
        best = BestCheckpoint(model, higher_is_better=False, patience=settings.patience)
    targets = torch.tensor(train_y, device=device)
    bf16 = training_precision(settings, device) == "bf16"
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train_texts), generator=rng).tolist()
        bar = progress(range(0, len(order), settings.batch_size), desc=f"teacher epoch {epoch}/{settings.epochs}", unit="batch")
        for first in bar:
            batch = order[first : first + settings.batch_size]
            encoded = tokenizer([train_texts[i] for i in batch], truncation=True, max_length=settings.max_length, padding=True, return_tensors="pt").to(device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model.raw_logits(encoded["input_ids"], encoded["attention_mask"]).float(), targets[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        dev_accuracy, dev_loss = dev_scores()
        history.append({"epoch": epoch, "dev_accuracy": dev_accuracy, "dev_loss": dev_loss})
        log.info("teacher epoch %d: dev accuracy %.4f, dev loss %.4f", epoch, dev_accuracy, dev_loss)
        if on_epoch:
            on_epoch(epoch, model, tokenizer)
        if best.update(epoch, dev_loss, last=epoch == settings.epochs):
            break
    best.restore()
    return best.best_epoch


def run_teacher(settings: TeacherSettings, run_dir: str | Path, on_epoch=None) -> dict:
    import torch

    started = time.time()
    seed_everything(settings.seed)
    device = resolve_device(settings.device)
    labels = load_labels(run_dir)
    train_texts, train_y = load_split(run_dir, "train")
    dev_texts, dev_y = load_split(run_dir, "dev")
    test_texts, _ = load_split(run_dir, "test")
    out = begin_stage(run_dir, "teacher")
    history, metrics = [], {}

    def load(loader, name, **kwargs):
        return load_hf(loader, name, "teacher", **kwargs)

    source = resolve_model(settings.finetuned or settings.model, "teacher")
    model, tokenizer = build_teacher(source, len(labels), labels, load, finetuned=bool(settings.finetuned))
    if settings.max_length == 0:  # auto: saved resolved, so the stages after it (and a re-run) read the length used
        settings = replace(settings, max_length=auto_max_length(tokenizer, train_texts))
        log.info("teacher input length %d tokens (auto, from the labeled texts' lengths)", settings.max_length)
    model.to(device)
    unchanged_encoder = False
    if settings.finetuned:
        _align_labels(model, labels)
        best_epoch = 0
    else:
        if model.head is not None:
            metrics["head_c"] = fit_frozen_head(model, tokenizer, settings, train_texts, train_y)
        if settings.recipe == "finetune" or model.head is None:
            best_epoch = _finetune(model, tokenizer, settings, train_texts, train_y, dev_texts, dev_y, device, history, on_epoch)
        else:
            best_epoch = 0
        unchanged_encoder = best_epoch == 0 and model.head is not None and Path(source).is_dir()

    model.eval()
    with torch.no_grad():
        model.temperature.fill_(1.0)
    raw_dev = teacher_logits(model, tokenizer, dev_texts, settings.max_length)
    shift = class_prior_shift(run_dir, labels) if settings.prior == "pool" else np.zeros(len(labels), dtype=np.float32)
    temperature = fit_temperature(raw_dev, dev_y, shift)
    with torch.no_grad():
        model.temperature.fill_(temperature)
        model.shift.copy_(torch.from_numpy(shift))
    save_teacher(model, tokenizer, out / "model", labels, link_from=source if unchanged_encoder else None)
    metrics.update({
        "dev_accuracy": accuracy((raw_dev / temperature + shift).argmax(1), dev_y),
        "prior_shift": shift.tolist(),
        "recipe": "finetuned" if settings.finetuned else ("finetune" if model.head is None else settings.recipe),
        "kind": model.kind,
        "pooling": model.pooling.mode if model.pooling else None,
        "temperature": temperature,
        "best_epoch": best_epoch,
        "history": history,
        "training_precision": training_precision(settings, device) if any(h["epoch"] for h in history) else None,  # None: not trained
        "device": device,
        "params": sum(p.numel() for p in model.parameters()),
        "test_examples": len(test_texts),
        "seconds": time.time() - started,
    })
    finish_stage(run_dir, "teacher", asdict(settings), metrics)
    return metrics
