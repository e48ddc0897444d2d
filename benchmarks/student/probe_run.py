"""Shared by the transfer-text probes (augment_probe.py, span_probe.py): a hard-linked copy of a finished run whose
real-unlabeled-text slot holds the probe's texts and their teacher logits, so that `ablate.py OUT ... --variant
kim-cnn:teacher:synthetic+unlabeled` trains on the run's synthetic texts + the probe's."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from gendistill.compressor.rundir import stage_path


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
