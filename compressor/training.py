"""Small helpers the stages share: seeding, metrics, progress bars, epoch selection."""

from __future__ import annotations

import contextlib
import copy
import random

import numpy as np

from gendistill.runtime.errors import GendistillError


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu; an explicit `cuda` without one is one sentence."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GendistillError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto.")
    return name


def native_bf16() -> bool:
    """Does this CPU do bfloat16 arithmetic natively (AVX512-BF16 or AMX)? Elsewhere torch emulates it, slower than fp32."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def int8_dot_product() -> bool:
    """Does this CPU multiply int8 with dot-product instructions (x86: AVX512-VNNI, AVX-VNNI or AMX)? Without them
    onnxruntime's int8 teacher gains little over fp32 torch (benchmarks/teacher/engines-avx2.json). Other
    architectures are taken to have them (ARM's dot-product instructions are standard on its servers and phones)."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    if capabilities.get("architecture") not in ("x86_64", "x86", "i386", "i686", "AMD64"):
        return True
    return any(capabilities.get(flag) for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def fused(device: str) -> bool | None:
    """The `fused` argument for torch's Adam/AdamW: one fused kernel per step instead of a loop of tensor ops, on the
    devices that have it (CPU and CUDA). Same update rule; on the 135M-parameter generator at batch 1 on 2 cores the
    optimizer step fell from 0.39 to 0.09 s of a 1.1 s step (benchmarks/generator/RESULTS.md). Used by the generator
    and the teacher; the 1M-parameter student's update is a small share of its step, so it keeps the default."""
    return True if device in ("cpu", "cuda") else None


def accuracy(predictions, targets) -> float:
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    return float((predictions == targets).mean()) if len(targets) else 0.0


def per_class_scores(predictions, targets, num_labels: int) -> list[dict]:
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    rows = []
    for k in range(num_labels):
        tp = int(((predictions == k) & (targets == k)).sum())
        predicted, actual = int((predictions == k).sum()), int((targets == k).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def macro_f1(predictions, targets, num_labels: int) -> float:
    return float(np.mean([row["f1"] for row in per_class_scores(predictions, targets, num_labels)]))


@contextlib.contextmanager
def torch_threads(count: int | None = None):
    """Inside: torch on `count` intra-op threads (None: left as it is); after: torch's thread count as it was before,
    whatever ran inside changed it (CTranslate2 resets the calling thread's OpenMP count, which torch reads)."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr (rates and ETA), quiet when not on a terminal unless asked."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kwargs)


class BestCheckpoint:
    """Keep the weights of the best epoch by a dev score, and say when to stop (early stopping).

    The teacher (dev cross-entropy, lower is better), the generator (dev perplexity, lower is better) and the
    student (dev accuracy) all select their epoch with this. `initial` scores the weights before training (epoch 0):
    when no epoch beats it, `best_epoch` stays 0 and the caller keeps (or reloads) the untrained weights;
    with `keep_initial`, `restore` reloads them itself.
    """

    def __init__(self, model, higher_is_better: bool = True, patience: int | None = None, initial: float | None = None,
                 keep_initial: bool = False):
        self.model = model
        self.sign = 1.0 if higher_is_better else -1.0
        self.patience = patience
        self.best_score = initial
        self.best_epoch = 0
        self._state = copy.deepcopy(model.state_dict()) if keep_initial else None
        self._waited = 0

    def update(self, epoch: int, score: float, last: bool = False) -> bool:
        """Record `score` of `epoch`; True when training should stop (patience used up).

        The weights are copied only when they improve and more epochs follow (`last=False`): the last
        epoch's weights are the model's own, so a model as large as the generator is not copied for nothing.
        """
        if self.best_score is None or self.sign * score > self.sign * self.best_score:
            self.best_score, self.best_epoch, self._waited = score, epoch, 0
            self._state = None if last else copy.deepcopy(self.model.state_dict())
            return False
        self._waited += 1
        return self.patience is not None and self._waited >= self.patience

    def restore(self) -> None:
        """Load the best epoch's weights into the model (no-op when they are already its own)."""
        if self._state is not None:
            self.model.load_state_dict(self._state)
