"""Is the student's class bias a lever? Each bundle's logit margin on the run's test split, shifted by a constant.

For every int8 bundle of a student-ablation variant (each seed), on a two-class run: the share of test texts it calls
the first class (against the teacher's and the truth), its accuracy as shipped, at the best shift (chosen on test
itself: a ceiling, not a method), and at two shifts chosen on dev (the one whose first-class share on dev matches the
teacher's there, and the one agreeing most with the teacher's dev labels).

    python benchmarks/student/bias_probe.py runs/demo bigru_teacher_synthetic_teacher_labels-logits_vocabulary-teacher \
        > benchmarks/student/bias/demo.json

Light (about a minute).
"""

import json
import sys
from pathlib import Path

import numpy as np

from gendistill import Classifier
from gendistill.compressor.rundir import load_split

run, variant = Path(sys.argv[1]), sys.argv[2]
(test, y_test), (dev, y_dev) = (load_split(run, split)[:2] for split in ("test", "dev"))
y_test, y_dev = np.asarray(y_test), np.asarray(y_dev)
teacher_test, teacher_dev = (np.load(run / "annotate" / f"{split}.npy").argmax(1) for split in ("test", "dev"))
grid = np.linspace(-3, 3, 601)


def accuracy(margin, y, shift):  # margin: logit of class 0 minus class 1; class 0 when margin > shift
    return float(((margin <= shift).astype(int) == y).mean())


results = {"run_dir": str(run), "variant": variant, "truth_test_first_share": float((y_test == 0).mean()),
           "teacher_test_first_share": float((teacher_test == 0).mean()), "teacher_dev_first_share": float((teacher_dev == 0).mean()), "seeds": {}}
for bundle in sorted((run / "student-ablation" / variant).glob("seed*/bundle")):
    classifier = Classifier.load(bundle)
    margin_test, margin_dev = ((logits[:, 0] - logits[:, 1]) for logits in (classifier.logits(test), classifier.logits(dev)))
    on_test = [accuracy(margin_test, y_test, s) for s in grid]
    on_dev = np.array([accuracy(margin_dev, teacher_dev, s) for s in grid])
    agree_shift = float(grid[on_dev == on_dev.max()].mean())
    share_shift = float(np.quantile(margin_dev, 1 - (teacher_dev == 0).mean()))
    results["seeds"][bundle.parent.name] = {
        "test_first_share": float((margin_test > 0).mean()), "accuracy": accuracy(margin_test, y_test, 0.0),
        "best_shift_on_test": float(grid[int(np.argmax(on_test))]), "accuracy_at_best_shift": max(on_test),
        "dev_share_shift": share_shift, "accuracy_at_dev_share_shift": accuracy(margin_test, y_test, share_shift),
        "dev_agreement_shift": agree_shift, "accuracy_at_dev_agreement_shift": accuracy(margin_test, y_test, agree_shift)}
    print(bundle.parent.name, results["seeds"][bundle.parent.name], file=sys.stderr, flush=True)
json.dump(results, sys.stdout, indent=1)
