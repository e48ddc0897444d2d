"""Small helpers the stages share: seeding, devices, metrics, progress bars, timing."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr (rates and ETA), quiet when not on a terminal unless asked."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kwargs)
