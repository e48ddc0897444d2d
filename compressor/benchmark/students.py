"""The student rows: each trained from the seed's cached run through the distill stage's own
`distill_student`, measured in PyTorch and, exported, as a bundle (int8 when it passes its checks)."""

from __future__ import annotations

import shutil
from pathlib import Path

from gendistill.compressor.benchmark.measure import bundle_median_ms, files_bytes, scores


def student_data(run_dir: Path, settings, transfer: str, count: int | None, select: str | None = None) -> dict:
    """The training set of one student: `transfer` is none, synthetic or unlabeled; `count` of its texts, the
    first ones, or with `select` the ones scoring highest: `confidence` (the teacher's largest probability) or
    `similarity` (TF-IDF cosine to the nearest training text)."""
    import numpy as np

    from gendistill.compressor.distill import most_confident, training_set
    from gendistill.compressor.rundir import load_split
    from gendistill.compressor.synthesize import nearest_similarities

    data = training_set(run_dir, settings, transfer=transfer)
    if transfer != "none" and count is not None:
        real = len(load_split(run_dir, "train")[0])
        if select is None:
            chosen = np.arange(real, min(real + count, len(data["texts"])))
        elif select == "confidence":  # what the distill stage's keep_confident does
            chosen = real + most_confident(data["soft"][real:], count)
        elif select == "similarity":
            score = nearest_similarities(data["texts"][real:], data["texts"][:real])
            chosen = real + np.sort(np.argsort(-score, kind="stable")[:count])
        else:
            raise ValueError(f"unknown select={select}")
        keep = np.concatenate([np.arange(real), chosen])
        data = {"texts": [data["texts"][i] for i in keep], "hard": data["hard"][keep], "soft": data["soft"][keep]}
    return data


def train_student_row(run_dir: Path, settings, data: dict, work_dir: Path, desc: str, labeled_only: bool = False) -> tuple[Path, float]:
    """Train one student on `data` exactly as the distill stage does; saves it to `work_dir/student/`. Returns that
    directory and the student's dev accuracy (of the epoch kept)."""
    from gendistill.compressor.distill import distill_student

    student_dir = work_dir / "student"
    metrics = distill_student(settings, run_dir, data, student_dir, labeled_only=labeled_only, desc=desc)
    return student_dir, metrics["dev_accuracy"]


def measure_student(run_dir: Path, student_dir: Path, test_texts, test_y, num_labels: int, export: bool,
                    latency_texts: list[str], teacher_predictions=None) -> dict:
    """Test scores in PyTorch; with `export`, the int8 bundle's accuracy, size and batch-1 latency too; with the
    teacher's test labels (`teacher_predictions`), the share of test texts where the student picks the teacher's."""
    from gendistill.compressor.student import count_parameters, load_student, predict_logits, student_input

    model, config = load_student(student_dir)
    predicted = predict_logits(model, student_input(student_dir, config), test_texts).argmax(1)
    result = {**scores(predicted, test_y, num_labels),
              "params": count_parameters(model), "vocab_size": config.vocab_size,
              "fp32_bytes": files_bytes([student_dir / "student.safetensors", student_dir / "tokenizer.model"]),
              "bytes": None, "latency_ms": None, "int8_accuracy": None}
    if teacher_predictions is not None:
        result["test_agreement"] = float((predicted == teacher_predictions).mean())
    if export:
        result.update(export_student(run_dir, student_dir, latency_texts))
    return result


def export_student(run_dir: Path, student_dir: Path, latency_texts: list[str]) -> dict:
    """Export the student as the pipeline's export stage would (int8 when it passes its checks, else fp32) and time it."""
    from gendistill.compressor.export_stage import run_export
    from gendistill.compressor.rundir import load_split
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.bundle import LAYOUT

    bundle = student_dir.parent / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    metrics = run_export(ExportSettings(golden_size=20), run_dir, bundle, student_dir=student_dir)
    # Timed as a runtime that has served as many texts as the user labeled (its word cache holds their words).
    latency = bundle_median_ms(bundle, latency_texts, seen_texts=load_split(run_dir, "train")[0])
    precision = metrics["precision"]
    return {"precision": precision, "int8_refused": metrics["int8_refused"], "int8_accuracy": metrics["int8_test_accuracy"],
            "latency_ms": latency, "bytes": files_bytes([bundle / LAYOUT.model, bundle / LAYOUT.tokenizer]),
            "onnx_batch1_ms": metrics["latency_ms"][f"{precision}_batch1"]}
