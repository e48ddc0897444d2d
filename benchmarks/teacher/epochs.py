"""Which fine-tuning epoch should the teacher keep? Every epoch scored on dev and test, over seeds.

The teacher stage fine-tunes all-mpnet-base-v2 for at most 4 epochs. It kept the epoch with the best dev accuracy
(200 texts: one text is 0.5 points, so ties are common and a tie keeps the earlier epoch); after this measurement it
keeps the one with the lowest dev cross-entropy. This trains the default
teacher (`finetune/embedded/128`, bfloat16 autocast where the CPU has it) on the benchmark's split of each seed with
patience large enough that all epochs run, and records after each epoch (0 = the frozen recipe's start): dev
accuracy, dev cross-entropy (uncalibrated logits) and test accuracy (2,000 texts, under bfloat16 autocast to halve
the time; its argmax agrees with fp32 on 99.8% of texts, benchmarks/teacher/engines.json). Then it scores selection
rules on those curves: the rule picks an epoch from dev alone, and its test accuracy is reported over seeds.

    python benchmarks/teacher/epochs.py benchmarks/teacher/epochs.json [--seeds 3] [--dataset rotten-tomatoes]

Resumable per seed (a finished seed is kept in the JSON). Heavy (about 6 minutes a seed on 2 cores): run nothing
else beside it.
"""

import argparse
import json
import statistics
from pathlib import Path

from sklearn.metrics import log_loss

from gendistill.compressor.data import run_data
from gendistill.compressor.pipeline import build_settings
from gendistill.compressor.rundir import is_complete, load_split
from gendistill.compressor.teacher import run_teacher, teacher_logits
from gendistill.compressor.training import accuracy
from gendistill.runtime.classifier import softmax

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--dataset", default="rotten-tomatoes")
parser.add_argument("--runs-dir", type=Path, default=Path("runs/teacher-epochs"))
args = parser.parse_args()

results = json.loads(args.out.read_text()) if args.out.is_file() else {"dataset": args.dataset, "seeds": {}}


for seed in range(args.seeds):
    if str(seed) in results["seeds"]:
        continue
    settings = build_settings(args.dataset, seed=seed, per_class=100, no_export=True, teacher_recipe="finetune", teacher="embedded", max_length=128)
    settings.teacher.patience = settings.teacher.epochs  # every epoch runs; the rules below choose afterwards
    run_dir = args.runs_dir / args.dataset / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_complete(run_dir, "data"):
        run_data(settings.data, run_dir)
    dev_texts, dev_y = load_split(run_dir, "dev")
    test_texts, test_y = load_split(run_dir, "test")
    curve = []

    def on_epoch(epoch, model, tokenizer):
        dev = teacher_logits(model, tokenizer, dev_texts, 128)
        test = teacher_logits(model, tokenizer, test_texts, 128, bf16=True, desc=f"seed {seed} epoch {epoch}: test")
        curve.append({"epoch": epoch, "dev_accuracy": accuracy(dev.argmax(1), dev_y), "dev_loss": float(log_loss(dev_y, softmax(dev), labels=range(dev.shape[1]))),
                      "test_accuracy": accuracy(test.argmax(1), test_y)})
        print(seed, curve[-1], flush=True)

    metrics = run_teacher(settings.teacher, run_dir, on_epoch=on_epoch)
    results["seeds"][str(seed)] = {"curve": curve, "kept_epoch": metrics["best_epoch"], "training_precision": metrics["training_precision"]}
    args.out.write_text(json.dumps(results, indent=1))


RULES = {  # each picks an epoch from a seed's curve by dev alone (epoch 0 = the frozen start)
    "best dev accuracy, earliest of ties (before)": lambda curve: max(curve, key=lambda c: (c["dev_accuracy"], -c["epoch"])),
    "best dev accuracy, latest of ties": lambda curve: max(curve, key=lambda c: (c["dev_accuracy"], c["epoch"])),
    "lowest dev loss (the teacher stage's rule since)": lambda curve: min(curve, key=lambda c: c["dev_loss"]),
    "last epoch": lambda curve: curve[-1],
    "last epoch unless below the start on dev": lambda curve: curve[-1] if curve[-1]["dev_accuracy"] >= curve[0]["dev_accuracy"] else curve[0],
}
summary = {}
for rule, pick in RULES.items():
    picks = [pick(results["seeds"][s]["curve"]) for s in sorted(results["seeds"])]
    accs = [p["test_accuracy"] for p in picks]
    summary[rule] = {"epochs": [p["epoch"] for p in picks], "test_accuracy": accs, "mean": statistics.fmean(accs),
                     "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    print(f"{rule:48s} epochs {summary[rule]['epochs']}  test {100 * summary[rule]['mean']:.1f} ± {100 * summary[rule]['std']:.1f}  "
          f"({' / '.join(f'{100 * a:.1f}' for a in accs)})")
results["rules"] = summary
args.out.write_text(json.dumps(results, indent=1))
