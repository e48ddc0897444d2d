"""Which epoch should the student keep? Train the run's default student without early stopping and score every epoch.

The distill stage keeps the epoch with the lowest dev cross-entropy (200 texts in the benchmark) and stops 5 epochs
after it. This traces one student seed through `--epochs` epochs (patience = epochs: no early stop) and records, after
each epoch, the signals a selection rule could use on dev (accuracy, cross-entropy, cross-entropy after temperature
scaling, agreement with the teacher, mean squared distance of the centred logits from the teacher's) beside the test
accuracy none of them may see, and saves the weights of every epoch so that weight averages can be scored afterwards.
It trains through the distill stage's own `distill_student` (its `on_epoch` hook), on the run's own annotations.

    python benchmarks/student/epoch_trace.py runs/benchmark/rotten-tomatoes/seed0 benchmarks/student/epoch-trace/seed0.json --epochs 20

Resumes nothing: one trace is one training run (about 45 s an epoch of 10,000 texts on 2 cores).
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.benchmark.students import student_data
from gendistill.compressor.distill import distill_student
from gendistill.compressor.encoder import fit_temperature, mean_nll
from gendistill.compressor.rundir import load_split
from gendistill.compressor.student import predict_logits

sys.path.insert(0, str(Path(__file__).parent))
from ablate import parse, run_settings  # noqa: E402  (the same variant syntax and base settings as ablate.py)


def centred(logits: np.ndarray) -> np.ndarray:
    return logits - logits.mean(1, keepdims=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--variant", default="bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    import torch

    values, transfer = parse(args.variant)
    settings = dataclasses.replace(run_settings(args.run_dir), seed=args.seed, epochs=args.epochs, patience=args.epochs,
                                   **{k: v for k, v in values.items() if k not in ("count", "select")})
    dev_texts, dev_y = load_split(args.run_dir, "dev")
    test_texts, test_y = load_split(args.run_dir, "test")
    teacher = {"dev": load_annotations(args.run_dir, "dev"), "test": load_annotations(args.run_dir, "test")}
    work = args.run_dir / "epoch-trace" / f"seed{args.seed}"
    weights = work / "weights"
    weights.mkdir(parents=True, exist_ok=True)

    def on_epoch(epoch, model, inputs, record):
        dev, test = predict_logits(model, inputs, dev_texts), predict_logits(model, inputs, test_texts)
        record.update({
            "dev_loss_calibrated": mean_nll(dev / fit_temperature(dev, dev_y), dev_y),
            "dev_teacher_agreement": float((dev.argmax(1) == teacher["dev"].argmax(1)).mean()),
            "dev_teacher_mse": float(((centred(dev) - centred(teacher["dev"])) ** 2).mean()),
            "test_accuracy": float((test.argmax(1) == np.asarray(test_y)).mean()),
            "test_teacher_agreement": float((test.argmax(1) == teacher["test"].argmax(1)).mean()),
        })
        torch.save(model.state_dict(), weights / f"epoch{epoch}.pt")
        print(json.dumps(record), file=sys.stderr, flush=True)

    count = int(values["count"]) if "count" in values else None
    data = student_data(args.run_dir, settings, transfer, count, values.get("select"))
    tick = time.time()
    metrics = distill_student(settings, args.run_dir, data, work / "student", desc=f"trace seed {args.seed}", on_epoch=on_epoch)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"run_dir": str(args.run_dir), "variant": args.variant, "seed": args.seed, "epochs": args.epochs,
                                        "settings": dataclasses.asdict(settings), "train_seconds": time.time() - tick,
                                        "training_texts": metrics["training_texts"], "history": metrics["history"]}, indent=1, default=str))


if __name__ == "__main__":
    main()
