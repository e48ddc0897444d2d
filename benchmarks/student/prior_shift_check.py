"""Test accuracy of a run's teacher and of the loss-selected ablation students (results-select-loss.json) before and
after moving their logits to the pool's class prior (+ log(pool share / sample share), as `--teacher-prior pool`
shifts the teacher). PyTorch, one thread; prints one line per model.

    python benchmarks/student/prior_shift_check.py runs/demo
"""

import sys
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.rundir import load_labels, load_split
from gendistill.compressor.student import load_student, predict_logits, student_input
from gendistill.compressor.teacher import class_prior_shift


def main():
    torch.set_num_threads(1)
    run = Path(sys.argv[1])
    labels = load_labels(run)
    shift = class_prior_shift(run, labels)
    texts, y = load_split(run, "test")
    y = np.asarray(y)
    print("shift", {label: round(float(s), 3) for label, s in zip(labels, shift)})
    teacher = load_annotations(run, "test")
    print(f"teacher: {(teacher.argmax(1) == y).mean():.4f} -> {((teacher + shift).argmax(1) == y).mean():.4f}")
    for student_dir in sorted((run / "student-ablation").glob("bigru_teacher_synthetic_select_by-loss/seed*/student")):
        model, config = load_student(student_dir)
        logits = predict_logits(model, student_input(student_dir, config), texts)
        print(f"{student_dir.parent.name}: {(logits.argmax(1) == y).mean():.4f} -> {((logits + shift).argmax(1) == y).mean():.4f}")


if __name__ == "__main__":
    main()
