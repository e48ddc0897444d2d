"""Where a student agrees with its teacher on the test split: on the texts the teacher gets right and on those it gets
wrong. A student that agrees more with its teacher gains accuracy only from the first.

    python benchmarks/student/agreement_by_teacher.py runs/benchmark-160k/seed0 STUDENT_DIR [STUDENT_DIR ...]

Each STUDENT_DIR is a saved student (PyTorch; e.g. RUN/student-ablation/<variant>/seed0/student).
"""

import sys
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.rundir import load_split
from gendistill.compressor.student import load_student, predict_logits, student_input


def main():
    run_dir, students = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    texts, y = load_split(run_dir, "test")
    y = np.asarray(y)
    teacher = load_annotations(run_dir, "test").argmax(1)
    right = teacher == y
    print(f"teacher right on {right.sum()} of {len(y)} test texts")
    for directory in students:
        model, config = load_student(directory)
        predicted = predict_logits(model, student_input(directory, config), texts).argmax(1)
        agree = predicted == teacher
        print(f"{directory}: accuracy {100 * (predicted == y).mean():.2f}, agreement {100 * agree.mean():.2f}, "
              f"where the teacher is right {100 * agree[right].mean():.2f} ({agree[right].sum()} texts), "
              f"where it is wrong {100 * agree[~right].mean():.2f} ({agree[~right].sum()} texts)")


if __name__ == "__main__":
    main()
