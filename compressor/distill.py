"""Stage `distill`: train the tiny CNN student on real + synthetic texts from the teacher's soft labels.

Loss (generation-distillation, with GAL's mixing weight):
    lambda * CE(true label)           on real labeled examples
  + (1 - lambda) * T^2 * KL(teacher_T || student_T)   on synthetic examples (and real ones if kd_on_real)
`labels="hard"` replaces the KL term by CE on the teacher's argmax (the papers' ablation).
Adam, lr 1e-3, early stopping on dev accuracy. The same student trained on the labeled data alone is
saved beside it, since that is the comparison a user needs.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from compressor.annotate import load_annotations
from compressor.embeddings import EMBEDDINGS, initial_vectors
from compressor.rundir import begin_stage, finish_stage, load_labels, load_split, stage_path
from compressor.student import ARCHITECTURES, StudentConfig, StudentTokenizer, build_student, count_parameters, save_student, train_tokenizer
from compressor.synthesize import load_synthetic
from compressor.training import accuracy, progress, seed_everything
from runtime.errors import GendistillError

log = logging.getLogger(__name__)


@dataclass
class DistillSettings:
    architecture: str = "kim-cnn"
    """kim-cnn or res-cnn."""
    embeddings: str = "teacher"
    """Initial subword vectors: teacher (offline default), glove, bpemb or random."""
    bpemb_model: str | None = None
    """BPEmb sentencepiece `.model` file (with --bpemb-vectors): the student then uses BPEmb's vocabulary."""
    bpemb_vectors: str | None = None
    """BPEmb word2vec vectors (`.w2v.bin` or `.w2v.txt`)."""
    bpemb: str | None = None
    """LANG:VOCAB:DIM (e.g. en:10000:100) to fetch BPEmb with the `bpemb` package (needs internet)."""
    vocab_size: int = 8000
    embed_dim: int = 100
    labels: str = "soft"
    """soft: KL to the teacher's probabilities; hard: CE to the teacher's argmax."""
    alpha: float = 0.5
    """lambda: weight of the true-label CE term; 1 - lambda weighs distillation."""
    temperature: float = 1.0
    """Distillation temperature T."""
    kd_on_real: bool = True
    """Also distill the teacher's soft labels on the real labeled texts."""
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 30
    patience: int = 5
    max_length: int = 128
    lowercase: bool = True
    seed: int = 0
    labeled_only_baseline: bool = True
    """Also train the same student on the labeled data alone (for the report)."""

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise GendistillError(f"--student must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}.")
        if self.embeddings not in EMBEDDINGS:
            raise GendistillError(f"--embeddings must be one of {', '.join(EMBEDDINGS)}, not {self.embeddings!r}.")
        if self.labels not in ("soft", "hard"):
            raise GendistillError(f"--labels must be soft or hard, not {self.labels!r}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise GendistillError(f"--lambda must lie in [0, 1], not {self.alpha}.")
        if self.temperature <= 0:
            raise GendistillError(f"--kd-temperature must be positive, not {self.temperature}.")
        if self.embeddings == "bpemb" and not (self.bpemb or (self.bpemb_model and self.bpemb_vectors)):
            raise GendistillError("--embeddings bpemb needs --bpemb-model and --bpemb-vectors files, or --bpemb LANG:VOCAB:DIM.")


def _bpemb_files(settings: DistillSettings) -> tuple[Path, Path]:
    if settings.bpemb_model and settings.bpemb_vectors:
        for path in (settings.bpemb_model, settings.bpemb_vectors):
            if not Path(path).is_file():
                raise GendistillError(f"BPEmb file {path} does not exist; give the .model and vectors files BPEmb ships.")
        return Path(settings.bpemb_model), Path(settings.bpemb_vectors)
    try:
        from bpemb import BPEmb

        lang, vocab, dim = settings.bpemb.split(":")
        emb = BPEmb(lang=lang, vs=int(vocab), dim=int(dim))
        return Path(emb.model_file), Path(emb.emb_file)
    except ImportError:
        raise GendistillError("--bpemb needs the `bpemb` package (`pip install bpemb`), or pass local --bpemb-model/--bpemb-vectors files.") from None
    except Exception as exc:  # bpemb downloads; offline it fails in many ways
        raise GendistillError(f"Could not fetch BPEmb {settings.bpemb!r} ({type(exc).__name__}); offline, pass local --bpemb-model/--bpemb-vectors files.") from None


def prepare_student(settings: DistillSettings, run_dir: str | Path, tokenizer_texts: list[str], num_labels: int, work_dir: Path):
    """The student's tokenizer (`work_dir/tokenizer.model`), config and initial embedding vectors."""
    import sentencepiece as spm

    model_path = work_dir / "tokenizer.model"
    digits_to_zero = False
    if settings.embeddings == "bpemb":
        bpemb_model, bpemb_vectors = _bpemb_files(settings)
        shutil.copyfile(bpemb_model, model_path)
        digits_to_zero = True  # BPEmb's preprocessing: lowercase, digits -> 0
    else:
        train_tokenizer(tokenizer_texts, work_dir / "tokenizer", settings.vocab_size, lowercase=settings.lowercase)
        bpemb_vectors = None
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    config = StudentConfig(
        architecture=settings.architecture, vocab_size=sp.get_piece_size(), embed_dim=settings.embed_dim,
        num_labels=num_labels, pad_id=max(sp.pad_id(), 0) if settings.embeddings != "bpemb" else _bpemb_pad(sp),
        max_length=settings.max_length, lowercase=settings.lowercase or settings.embeddings == "bpemb",
        digits_to_zero=digits_to_zero, dropout=0.5,
    )
    vectors, coverage = initial_vectors(
        settings.embeddings, sp, settings.embed_dim, teacher_dir=stage_path(run_dir, "teacher") / "model",
        bpemb_vectors_path=bpemb_vectors, seed=settings.seed,
    )
    vectors[config.pad_id] = 0.0
    return StudentTokenizer(model_path, config), config, vectors, coverage


def _bpemb_pad(sp) -> int:
    # BPEmb models have no pad piece; <unk> (id 0) is never produced for lowercase text, so it pads.
    return sp.pad_id() if sp.pad_id() >= 0 else sp.unk_id()


def train_student(config: StudentConfig, tokenizer: StudentTokenizer, vectors: np.ndarray, *,
                  texts: list[str], hard: np.ndarray, soft: np.ndarray | None, dev_texts: list[str], dev_y: list[int],
                  settings: DistillSettings, desc: str = "distill"):
    """Train one student. `hard[i]` is a label index or -1; `soft[i]` teacher logits or NaN (no KD).

    Returns (best model by dev accuracy, history).
    """
    import torch
    import torch.nn.functional as F

    seed_everything(settings.seed)
    model = build_student(config)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.from_numpy(vectors))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    ids = tokenizer.encode(texts)
    dev_inputs = [tokenizer(dev_texts[i : i + 512]) for i in range(0, len(dev_texts), 512)]
    hard_t = torch.as_tensor(hard, dtype=torch.long)
    has_soft = torch.zeros(len(texts), dtype=torch.bool) if soft is None else torch.as_tensor(~np.isnan(soft).any(1))
    soft_t = torch.zeros((len(texts), config.num_labels)) if soft is None else torch.nan_to_num(torch.as_tensor(soft, dtype=torch.float32))
    T, alpha = settings.temperature, settings.alpha
    generator = torch.Generator().manual_seed(settings.seed)
    best_accuracy, best_state, waited, history = -1.0, None, 0, []
    bar = progress(range(1, settings.epochs + 1), desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        order = torch.randperm(len(texts), generator=generator)
        for start in range(0, len(texts), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            logits = model(torch.from_numpy(tokenizer.pad([ids[i] for i in batch.tolist()])))
            loss = logits.new_zeros(())
            real = hard_t[batch] >= 0
            if real.any() and alpha > 0:
                loss = loss + alpha * F.cross_entropy(logits[real], hard_t[batch][real])
            distilled = has_soft[batch]
            if distilled.any() and alpha < 1:
                student, teacher = logits[distilled], soft_t[batch][distilled]
                if settings.labels == "hard":
                    kd = F.cross_entropy(student, teacher.argmax(1))
                else:
                    kd = F.kl_div(F.log_softmax(student / T, 1), F.log_softmax(teacher / T, 1), log_target=True, reduction="batchmean") * T * T
                loss = loss + (1 - alpha) * kd
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            dev_pred = np.concatenate([model(x).argmax(1).numpy() for x in dev_inputs]) if dev_inputs else np.zeros(0)
        dev_accuracy = accuracy(dev_pred, dev_y)
        history.append({"epoch": epoch, "dev_accuracy": dev_accuracy})
        bar.set_postfix(dev_acc=f"{dev_accuracy:.3f}", best=f"{max(best_accuracy, dev_accuracy):.3f}")
        if dev_accuracy > best_accuracy:
            best_accuracy, waited = dev_accuracy, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= settings.patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def training_set(run_dir: str | Path, settings: DistillSettings, transfer: str = "synthetic") -> dict:
    """Real labeled texts (+ their teacher logits when kd_on_real) and transfer texts with teacher logits.

    `transfer` is `synthetic` (generation-distillation), `unlabeled` (GAL's oracle) or `none` (plain KD).
    """
    train_texts, train_y = load_split(run_dir, "train")
    k = len(load_labels(run_dir))
    nan = np.full((len(train_texts), k), np.nan, dtype=np.float32)
    real_soft = load_annotations(run_dir, "train") if settings.kd_on_real else nan
    texts, hard, soft = list(train_texts), list(train_y), [real_soft]
    if transfer != "none":
        transfer_logits = load_annotations(run_dir, transfer)
        transfer_texts = load_synthetic(run_dir) if transfer == "synthetic" else load_split(run_dir, "unlabeled")[0][: len(transfer_logits)]
        texts += transfer_texts
        hard += [-1] * len(transfer_texts)
        soft.append(transfer_logits)
    return {"texts": texts, "hard": np.asarray(hard), "soft": np.concatenate(soft)}


def run_distill(settings: DistillSettings, run_dir: str | Path) -> dict:
    started = time.time()
    labels = load_labels(run_dir)
    dev_texts, dev_y = load_split(run_dir, "dev")
    data = training_set(run_dir, settings)
    if len(data["texts"]) == 0:
        raise GendistillError("There is nothing to train the student on; check the data split.")
    out = begin_stage(run_dir, "distill")
    work = out / "student"
    work.mkdir()
    tokenizer, config, vectors, coverage = prepare_student(settings, run_dir, data["texts"], len(labels), work)
    log.info("student vocabulary %d pieces, %.0f%% initialised from %s vectors", config.vocab_size, 100 * coverage, settings.embeddings)
    model, history = train_student(config, tokenizer, vectors, dev_texts=dev_texts, dev_y=dev_y, settings=settings, desc="distill student", **data)
    save_student(model, config, work)
    metrics = {
        "params": count_parameters(model),
        "vocab_size": config.vocab_size,
        "embedding_coverage": coverage,
        "training_texts": len(data["texts"]),
        "dev_accuracy": max(h["dev_accuracy"] for h in history),
        "history": history,
    }
    if settings.labeled_only_baseline:
        baseline_dir = out / "labeled_only"
        baseline_dir.mkdir()
        shutil.copyfile(work / "tokenizer.model", baseline_dir / "tokenizer.model")
        train_texts, train_y = load_split(run_dir, "train")
        baseline_settings = replace(settings, alpha=1.0)
        baseline, baseline_history = train_student(
            config, tokenizer, vectors, texts=train_texts, hard=np.asarray(train_y), soft=None,
            dev_texts=dev_texts, dev_y=dev_y, settings=baseline_settings, desc="labeled-only student",
        )
        save_student(baseline, config, baseline_dir)
        metrics["labeled_only_dev_accuracy"] = max(h["dev_accuracy"] for h in baseline_history)
    metrics["seconds"] = time.time() - started
    finish_stage(run_dir, "distill", asdict(settings), metrics)
    return metrics
