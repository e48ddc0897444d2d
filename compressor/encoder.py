"""The teacher as one torch module: an encoder used the way it was trained, and a linear head on top.

- A sentence-transformers folder (`modules.json`) declares how it turns token states into one vector:
  its Pooling module (`1_Pooling/config.json`: mean, CLS, max or last token) and whether a Normalize
  module follows. The teacher pools that way and puts a linear head on the pooled vector ("pooled").
- Any other checkpoint keeps its own classification head (`AutoModelForSequenceClassification`, e.g.
  BERT's CLS token + pooler) ("sequence-classification"); an already fine-tuned classifier is one of these.

Both return *calibrated* logits: the head's logits divided by a temperature fitted on dev (`calibrate`),
so their softmax is a probability the student can learn from, plus a per-class `shift` (zero unless the teacher
stage corrects for a class prior that differs from the labeled sample's, see `prior_shift`). Saved in `teacher/model/`: the encoder's
files, its tokenizer, `teacher.json` (kind, pooling, temperature) and, when pooled, `head.safetensors`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gendistill.runtime.errors import GendistillError

POOLING_MODES = ("mean", "cls", "max", "lasttoken")


@dataclass(frozen=True)
class Pooling:
    mode: str = "mean"
    normalize: bool = False


def read_pooling(model_dir: str | Path) -> Pooling | None:
    """The pooling a sentence-transformers folder declares, or None for any other checkpoint."""
    model_dir = Path(model_dir)
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text())
        pooling = next(m for m in modules if m.get("type", "").endswith("Pooling"))
        config = json.loads((model_dir / pooling.get("path", "") / "config.json").read_text())
    except (OSError, ValueError, StopIteration):
        raise GendistillError(f"{model_dir} has a modules.json without a readable Pooling module; pass a plain checkpoint or a complete "
                              "sentence-transformers folder.") from None
    modes = [mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}_token" if mode == "cls" else f"pooling_mode_{mode}_tokens")
             or config.get(f"pooling_mode_{mode}")]
    if len(modes) != 1:
        raise GendistillError(f"{model_dir}'s pooling combines {modes or 'no'} modes; only one of {', '.join(POOLING_MODES)} is supported.")
    return Pooling(modes[0], any(m.get("type", "").endswith("Normalize") for m in modules))


def pool(states, mask, pooling: Pooling):
    """One vector per text from token states [batch, tokens, hidden] and the attention mask."""
    import torch

    weights = mask.unsqueeze(-1).to(states.dtype)
    if pooling.mode == "mean":
        vector = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    elif pooling.mode == "cls":
        vector = states[:, 0]
    elif pooling.mode == "max":
        vector = states.masked_fill(weights == 0, torch.finfo(states.dtype).min).max(1).values
    else:  # lasttoken, with right padding
        vector = states[torch.arange(states.shape[0], device=states.device), mask.sum(1) - 1]
    return torch.nn.functional.normalize(vector, dim=-1) if pooling.normalize else vector


def _module_class():
    import torch

    class TeacherClassifier(torch.nn.Module):
        """logits = head(pool(encoder(text))) / temperature + shift, or a checkpoint's own head / temperature + shift."""

        def __init__(self, encoder, num_labels: int, pooling: Pooling | None, temperature: float = 1.0, shift=None):
            super().__init__()
            self.encoder, self.pooling = encoder, pooling
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels) if pooling else None
            self.register_buffer("temperature", torch.tensor(float(temperature)))
            self.register_buffer("shift", torch.tensor(shift if shift is not None else [0.0] * num_labels, dtype=torch.float32))

        @property
        def kind(self) -> str:
            return "pooled" if self.pooling else "sequence-classification"

        def embed(self, input_ids, attention_mask):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool(states, attention_mask, self.pooling)

        def raw_logits(self, input_ids, attention_mask):
            if self.pooling:
                return self.head(self.embed(input_ids, attention_mask))
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits

        def forward(self, input_ids, attention_mask):
            return self.raw_logits(input_ids, attention_mask) / self.temperature + self.shift

    return TeacherClassifier


def build_teacher(source: str, num_labels: int, labels: list[str], load, finetuned: bool = False, pooling_default: Pooling | None = None):
    """A teacher on the encoder at `source` (a folder or hub name) with a fresh head (or its own, if `finetuned`).

    `load(loader, name, **kwargs)` calls a transformers `from_pretrained` (with the offline handling of
    `assets.load_hf`). `pooling_default` pools a checkpoint that declares no pooling (else it keeps its own
    classification head). Returns (module, tokenizer).
    """
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if finetuned and (Path(source) / "teacher.json").is_file():  # a teacher another gendistill run made
        model, tokenizer = load_teacher_dir(source)
        if model.head is not None and model.head.out_features != num_labels:
            raise GendistillError(f"The teacher in {source} has {model.head.out_features} outputs but the data has {num_labels} labels; "
                                  "pass a classifier made for these labels.")
        return model, tokenizer
    if not finetuned and not Path(source).is_dir():
        source = _hub_folder(source) or source
    tokenizer = load(AutoTokenizer, source)
    pooling = None if finetuned else (read_pooling(source) if Path(source).is_dir() else None) or pooling_default
    if pooling:
        encoder = load(AutoModel, source)
    elif finetuned:
        encoder = load(AutoModelForSequenceClassification, source)
    else:
        encoder = load(AutoModelForSequenceClassification, source, num_labels=num_labels, id2label=dict(enumerate(labels)),
                       label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True)
    return _module_class()(encoder, num_labels, pooling), tokenizer


def _hub_folder(name: str) -> str | None:
    """A hub model's files as a local folder (from the cache when the hub is unreachable), so its
    modules.json can say how it pools; None when it cannot be had (loading then says why)."""
    from gendistill.compressor.assets import hub_reachable

    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*"],
                                 local_files_only=not hub_reachable())
    except Exception:  # noqa: BLE001 - any failure here falls back to loading by name, which reports it
        return None


def save_teacher(model, tokenizer, out_dir: Path, labels: list[str], link_from: str | None = None) -> None:
    """Write the teacher to `out_dir`. `link_from`: the encoder is unchanged from that folder, so its files
    are hard-linked (copied across file systems) instead of written again (438 MB for mpnet)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    if link_from:
        for source in Path(link_from).rglob("*"):
            if source.is_file() and source.name != "desktop.ini":
                target = out_dir / source.relative_to(link_from)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
    else:
        model.encoder.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    meta = {"kind": model.kind, "labels": labels, "temperature": float(model.temperature), "shift": model.shift.tolist(),
            "pooling": asdict(model.pooling) if model.pooling else None}
    if model.pooling:
        save_file({"weight": model.head.weight.detach().contiguous(), "bias": model.head.bias.detach().contiguous()}, str(out_dir / "head.safetensors"))
    (out_dir / "teacher.json").write_text(json.dumps(meta, indent=1))


def load_teacher_dir(model_dir: str | Path, device: str = "cpu"):
    """(module, tokenizer) saved by `save_teacher`, in eval mode on `device`."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "teacher.json").read_text())
    if meta["kind"] == "pooled":
        encoder = AutoModel.from_pretrained(model_dir)
        model = _module_class()(encoder, len(meta["labels"]), Pooling(**meta["pooling"]), meta["temperature"], meta.get("shift"))
        head = load_file(str(model_dir / "head.safetensors"))
        with torch.no_grad():
            model.head.weight.copy_(head["weight"])
            model.head.bias.copy_(head["bias"])
    else:
        model = _module_class()(AutoModelForSequenceClassification.from_pretrained(model_dir), len(meta["labels"]), None, meta["temperature"],
                                meta.get("shift"))
    return model.to(device).eval(), AutoTokenizer.from_pretrained(model_dir)


def batches_by_length(texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Index batches of texts sorted by length, so each batch pads little."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(texts), batch_size)]


def batched(texts: list[str], batch_size: int, width: int, compute, desc: str | None = None, workers: int = 1) -> np.ndarray:
    """[len(texts), width] float32 from `compute(batch_texts) -> array`, over batches sorted by length (little
    padding), with a progress bar when `desc` is given. The torch and onnxruntime teachers both run through here.
    `workers` > 1: that many batches computed at once in threads (`compute` must be thread-safe; each batch's
    result does not depend on which thread computed it)."""
    from concurrent.futures import ThreadPoolExecutor

    from gendistill.compressor.training import progress

    out = np.zeros((len(texts), width), dtype=np.float32)
    # Longest batches first: the slowest come first, so the bar's rate and ETA only improve as it runs (shortest
    # first, they promised too little time), and a batch too long for memory fails at once, not at the end.
    batches = batches_by_length(texts, batch_size)[::-1]
    with progress(total=len(texts), desc=desc, unit="text", disable=desc is None) as bar, \
            ThreadPoolExecutor(workers) as pool:  # texts/s, not batches/s
        # One worker computes in the calling thread, inside whatever torch modes the caller entered.
        apply = map if workers == 1 else pool.map
        for batch, values in zip(batches, apply(lambda batch: compute([texts[i] for i in batch]), batches)):
            out[batch] = values
            bar.update(len(batch))
    return out


def fit_head(features: np.ndarray, targets, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Logistic regression on frozen features, C chosen by stratified k-fold cross-validation on the labeled
    texts (k = 5, fewer when a class has fewer texts). Returns (weight [labels, dim], bias [labels], C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    targets = np.asarray(targets)
    folds = min(5, int(np.bincount(targets).min()))
    c = 1.0
    if folds >= 2:
        # A plain grid (not LogisticRegressionCV, whose fitted attributes change across scikit-learn versions);
        # the first C of the best mean accuracy wins, so the search is deterministic.
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        grid = np.logspace(-4, 2, 13).tolist()
        means = [cross_val_score(LogisticRegression(C=value, max_iter=5000), features, targets, cv=splitter).mean() for value in grid]
        c = float(grid[int(np.argmax(means))])
    model = LogisticRegression(C=c, max_iter=5000).fit(features, targets)
    weight, bias = model.coef_, model.intercept_
    if weight.shape[0] == 1:  # binary: sklearn keeps one row; two symmetric rows give the same softmax
        weight, bias = np.concatenate([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return weight.astype(np.float32), bias.astype(np.float32), c


def prior_shift(train_counts: list[int], pool_counts: list[int]) -> np.ndarray:
    """log(pool share) - log(train share) per class: added to a classifier's log-probabilities, it moves them from
    the class prior of the sample it was trained on to the pool's (Bayes' rule under label shift; Saerens et al.
    2002). Zero when the shares are equal."""
    train, pool = np.asarray(train_counts, dtype=np.float64), np.asarray(pool_counts, dtype=np.float64)
    return (np.log(pool / pool.sum()) - np.log(train / train.sum())).astype(np.float32)


def mean_nll(logits: np.ndarray, targets) -> float:
    """Mean negative log-likelihood (cross-entropy) of the `targets` under softmax(`logits`)."""
    from scipy.special import log_softmax

    return float(-log_softmax(logits, axis=1)[np.arange(len(targets)), np.asarray(targets)].mean())


def fit_temperature(logits: np.ndarray, targets, shift: np.ndarray | None = None) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T + shift) on held-out texts
    (temperature scaling, Guo et al. 2017): it keeps the argmax and makes confidences mean what they say."""
    from scipy.optimize import minimize_scalar

    targets = np.asarray(targets)
    if len(targets) == 0:
        return 1.0

    def nll(log_t):
        return mean_nll(logits / np.exp(log_t) + (0.0 if shift is None else shift), targets)

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded").x))
