"""Shared fixtures. Nothing here downloads: the corpus is generated, the tokenizer is trained here,
and the models are tiny ones built from configs in code."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

LABELS = ["sport", "business", "tech"]
_WORDS = {
    "sport": ["match", "goal", "team", "coach", "league", "striker", "season", "win", "cup", "referee"],
    "business": ["shares", "market", "profit", "bank", "investors", "economy", "sales", "firm", "deal", "stock"],
    "tech": ["software", "phone", "internet", "chip", "users", "computer", "online", "data", "apps", "network"],
}
_FILLER = ["the", "a", "new", "big", "after", "with", "this", "year", "said", "report", "on", "today", "and"]


def toy_corpus(n_per_label: int = 60, seed: int = 0) -> list[tuple[str, str]]:
    """A small 3-topic corpus whose classes a CNN can separate from a few words."""
    rng = random.Random(seed)
    rows = []
    for label in LABELS:
        for _ in range(n_per_label):
            words = rng.sample(_WORDS[label], 3) + rng.sample(_FILLER, 4)
            rng.shuffle(words)
            text = " ".join(words).capitalize() + rng.choice([".", "!", " 2024.", ""])
            rows.append((text, label))
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="session")
def toy_rows():
    return toy_corpus()


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory, toy_rows) -> Path:
    import csv

    path = tmp_path_factory.mktemp("data") / "toy.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(toy_rows)
    return path


def make_student_run(run_dir: Path, rows, architecture: str = "kim-cnn", epochs: int = 15) -> Path:
    """A run directory whose `data` and `distill` stages are finished, with a small trained student."""
    import torch

    from gendistill.compressor.rundir import finish_stage, begin_stage, write_jsonl_atomic
    from gendistill.compressor.student import StudentConfig, build_student, save_student, student_input, train_tokenizer
    from gendistill.runtime.bundle import write_json_atomic

    split = {"train": rows[: len(rows) // 2], "dev": rows[len(rows) // 2 : 3 * len(rows) // 4], "test": rows[3 * len(rows) // 4 :]}
    data = begin_stage(run_dir, "data")
    for name, part in split.items():
        write_jsonl_atomic(data / f"{name}.jsonl", [{"text": t, "label": y} for t, y in part])
    # Texts for the export's int8 agreement check: it needs several hundred to show 99% agreement.
    write_jsonl_atomic(data / "unlabeled.jsonl", [{"text": t} for t, _ in toy_corpus(1000, seed=1)])
    write_json_atomic(data / "labels.json", LABELS)
    finish_stage(run_dir, "data", {"dataset": "toy"}, {"train": len(split["train"])})

    distill = begin_stage(run_dir, "distill")
    student_dir = distill / "student"
    student_dir.mkdir()
    config = StudentConfig(architecture=architecture, vocab_size=120, embed_dim=16, num_filters=8, hidden=16,
                           num_labels=len(LABELS), max_length=32)
    train_tokenizer([t for t, _ in rows], student_dir / "tokenizer", vocab_size=config.vocab_size)
    inputs = student_input(student_dir, config)
    torch.manual_seed(0)
    model = build_student(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    texts = [t for t, _ in split["train"]]
    targets = torch.tensor([LABELS.index(y) for _, y in split["train"]])
    batch = torch.from_numpy(inputs(texts))
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), targets).backward()
        optimizer.step()
    model.eval()
    save_student(model, config, student_dir)
    finish_stage(run_dir, "distill", {"architecture": architecture}, {"dev_accuracy": None})
    return run_dir


@pytest.fixture(scope="session")
def student_run(tmp_path_factory, toy_rows) -> Path:
    """A finished tiny run (data + distill) to export from; read-only for tests."""
    return make_student_run(tmp_path_factory.mktemp("run"), toy_rows)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, student_run) -> Path:
    """The tiny student exported once (int8) and shared read-only; copy it before damaging it."""
    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    out = tmp_path_factory.mktemp("shared") / "bundle"
    run_export(ExportSettings(), student_run, out)
    return out


def interrupt_second_shard(monkeypatch):
    """Make synthesis raise KeyboardInterrupt when it asks for its second shard (an interruption between
    shards); returns a function that restores the real sampling."""
    import gendistill.compressor.synthesize as synthesize

    real, calls = synthesize.sample_shard, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthesize, "sample_shard", dying)
    return lambda: monkeypatch.setattr(synthesize, "sample_shard", real)
