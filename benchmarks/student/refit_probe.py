"""Refit on train + dev: does the student gain from the 200 dev texts once dev has chosen its epoch?

For each student seed on one finished run: (1) the default student, its epoch kept by dev cross-entropy; (2) the same
seed trained again from scratch on the same texts plus the dev texts (their true labels in the λ term, the teacher's
soft labels in the KD term, like the training texts) for exactly the epoch count (1) kept, the last epoch kept, over
(1)'s tokenizer. Both are exported as the pipeline exports and scored on the test split. Resumes per seed.

    git checkout 4f2245f  # its train_student had the select argument this needs (taken out after the measurement)
    python benchmarks/student/refit_probe.py runs/demo benchmarks/student/refit.json --seeds 6
"""

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ablate import run_settings  # noqa: E402

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.benchmark.students import measure_student, student_data
from gendistill.compressor.distill import distill_student, prepare_student, teacher_prior_shift, train_student, with_auto_choices
from gendistill.compressor.rundir import load_labels, load_split
from gendistill.compressor.student import save_student


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"run_dir": str(args.run_dir), "per_seed": {}}
    run = args.run_dir
    test_texts, test_y = load_split(run, "test")
    dev_texts, dev_y = load_split(run, "dev")
    k = len(load_labels(run))
    teacher_test = load_annotations(run, "test").argmax(1)
    work = run / "student-ablation" / "refit"
    for seed in range(args.seeds):
        if str(seed) in results["per_seed"]:
            continue
        settings = with_auto_choices(dataclasses.replace(run_settings(run), seed=seed), run)
        data = student_data(run, settings, "synthetic", None)
        tick = time.time()
        default_dir = work / f"seed{seed}" / "default" / "student"
        metrics = distill_student(settings, run, data, default_dir, desc=f"default seed {seed}")
        epochs = next(h["epoch"] for h in metrics["history"] if h.get("kept"))
        default = measure_student(run, default_dir, test_texts, test_y, k, True, test_texts[:200], teacher_test)
        default_seconds = time.time() - tick

        tick = time.time()
        refit_dir = work / f"seed{seed}" / "refit" / "student"
        refit_dir.mkdir(parents=True, exist_ok=True)
        refit_settings = dataclasses.replace(settings, epochs=epochs)
        inputs, config, vectors, _ = prepare_student(refit_settings, run, data["texts"], k, refit_dir, default_dir / "tokenizer.model")
        texts = data["texts"] + dev_texts
        hard = np.concatenate([data["hard"], np.asarray(dev_y)])
        soft = np.concatenate([data["soft"], load_annotations(run, "dev")])
        shift = teacher_prior_shift(run) if settings.logit_adjustment else None
        model, history = train_student(config, inputs, vectors, texts=texts, hard=hard, soft=soft, dev_texts=dev_texts, dev_y=dev_y,
                                       settings=refit_settings, desc=f"refit seed {seed}", label_shift=shift, select=False)
        save_student(model, config, refit_dir)
        refit = measure_student(run, refit_dir, test_texts, test_y, k, True, test_texts[:200], teacher_test)
        results["per_seed"][str(seed)] = {"epochs": epochs, "default": {**default, "train_seconds": default_seconds},
                                          "refit": {**refit, "train_seconds": time.time() - tick}}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1, default=str))
        print(f"seed {seed}: epoch {epochs}; default {default['int8_accuracy']} (agreement {default['test_agreement']:.3f}), "
              f"refit {refit['int8_accuracy']} (agreement {refit['test_agreement']:.3f})", file=sys.stderr, flush=True)
    for name in ("default", "refit"):
        values = [100 * s[name]["int8_accuracy"] for s in results["per_seed"].values()]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:8s} {statistics.fmean(values):.2f} ± {spread:.2f}  " + " / ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
