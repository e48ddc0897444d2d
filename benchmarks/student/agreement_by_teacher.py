"""Where a student agrees with its teacher on the test split: on the texts the teacher gets right and on those it gets
wrong (a student that agrees more with its teacher gains accuracy only from the first), and by how sure the teacher
is of a text (its largest probability, in bins): whether the student misses where the teacher hesitates too or on
texts the teacher finds clear.

    python benchmarks/student/agreement_by_teacher.py runs/benchmark-160k/seed0 STUDENT_DIR [STUDENT_DIR ...]

Each STUDENT_DIR is a saved student (PyTorch; e.g. RUN/student-ablation/<variant>/seed0/student).
"""

import sys
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.rundir import load_split
from gendistill.compressor.student import load_student, predict_logits, student_input
from gendistill.runtime.classifier import softmax


def main():
    run_dir, students = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    texts, y = load_split(run_dir, "test")
    y = np.asarray(y)
    probabilities = softmax(load_annotations(run_dir, "test"))
    teacher, sure = probabilities.argmax(1), probabilities.max(1)
    right = teacher == y
    print(f"teacher right on {right.sum()} of {len(y)} test texts")
    edges = [0.0, 0.8, 0.9, 0.95, 1.0]
    bins = np.digitize(sure, edges[1:-1])  # index of each text's bin; a probability of 1.0 falls in the last
    for directory in students:
        model, config = load_student(directory)
        predicted = predict_logits(model, student_input(directory, config), texts).argmax(1)
        agree = predicted == teacher
        print(f"{directory}: accuracy {100 * (predicted == y).mean():.2f}, agreement {100 * agree.mean():.2f}, "
              f"where the teacher is right {100 * agree[right].mean():.2f} ({agree[right].sum()} texts), "
              f"where it is wrong {100 * agree[~right].mean():.2f} ({agree[~right].sum()} texts)")
        for index, (low, high) in enumerate(zip(edges, edges[1:])):
            members = bins == index
            print(f"  teacher's probability {low:.2f}-{high:.2f}: {members.sum():4d} texts, teacher accuracy "
                  f"{100 * right[members].mean():5.1f}, student accuracy {100 * (predicted == y)[members].mean():5.1f}, "
                  f"agreement {100 * agree[members].mean():5.1f}")


if __name__ == "__main__":
    main()
