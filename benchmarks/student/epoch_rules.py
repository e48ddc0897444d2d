"""Score epoch-selection rules on the traces epoch_trace.py made: which epoch each rule would keep, and its test accuracy.

Every rule stops as the distill stage does (patience 5 epochs without a better score) and keeps its best epoch; the
weight averages are scored by loading the saved weights of each epoch into the trace's student and averaging them.
Test accuracy is PyTorch's (fp32), on the split's test texts; "best" is the best epoch in hindsight (no rule can see it).

    python benchmarks/student/epoch_rules.py benchmarks/student/epoch-trace/seed0.json benchmarks/student/epoch-trace/seed1.json ...
"""

import argparse
import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from gendistill.compressor.distill import DistillSettings
from gendistill.compressor.rundir import load_split
from gendistill.compressor.training import BestCheckpoint

RULES = {  # name: (history key, lower is better)
    "dev cross-entropy (the default)": ("dev_loss", True),
    "dev cross-entropy after temperature scaling": ("dev_loss_calibrated", True),
    "dev distance from the teacher's logits": ("dev_teacher_mse", True),
    "dev agreement with the teacher": ("dev_teacher_agreement", False),
    "dev accuracy": ("dev_accuracy", False),
}
PATIENCE = DistillSettings.patience  # the distill stage's default


def kept_epoch(history: list[dict], key: str, lower: bool) -> tuple[int, int]:
    """(kept epoch, last epoch trained) under the distill stage's early stopping (`BestCheckpoint`, PATIENCE)."""
    best = BestCheckpoint(SimpleNamespace(state_dict=dict), higher_is_better=not lower, patience=PATIENCE)  # scores only, no weights
    for h in history:
        if best.update(h["epoch"], h[key]):
            return best.best_epoch, h["epoch"]
    return best.best_epoch, history[-1]["epoch"]


def averaged_accuracy(work: Path, epochs: list[int], texts: list[str], y: np.ndarray) -> float:
    """Test accuracy of the trace's student (in `work`) with the weights of `epochs` averaged."""
    import torch

    from gendistill.compressor.student import load_student, predict_logits, student_input

    model, config = load_student(work / "student")
    states = [torch.load(work / "weights" / f"epoch{e}.pt") for e in epochs]
    model.load_state_dict({k: sum(s[k].float() for s in states) / len(states) for k in states[0]})
    return float((predict_logits(model, student_input(work / "student", config), texts).argmax(1) == y).mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", type=Path, nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    traces = [json.loads(p.read_text()) for p in args.traces]
    rows = {}
    for trace in traces:
        history = trace["history"]
        work = Path(trace["run_dir"]) / "epoch-trace" / f"seed{trace['seed']}"
        texts, y = load_split(trace["run_dir"], "test")
        test = {h["epoch"]: h["test_accuracy"] for h in history}
        for name, (key, lower) in RULES.items():
            kept, stop = kept_epoch(history, key, lower)
            rows.setdefault(name, []).append({"kept": kept, "stopped": stop, "test_accuracy": test[kept]})
        kept, stop = kept_epoch(history, "dev_loss", True)
        for name, epochs in {"average of every epoch trained (dev cross-entropy's stop)": list(range(1, stop + 1)),
                             "average of the kept epoch (dev cross-entropy) and its two neighbours": [e for e in (kept - 1, kept, kept + 1) if e in test],
                             f"average of every epoch of the {len(history)}": sorted(test)}.items():
            rows.setdefault(name, []).append({"kept": f"{epochs[0]}-{epochs[-1]}", "stopped": stop, "test_accuracy": averaged_accuracy(work, epochs, texts, np.asarray(y))})
        best = max(history, key=lambda h: h["test_accuracy"])
        rows.setdefault("best epoch in hindsight", []).append({"kept": best["epoch"], "stopped": None, "test_accuracy": best["test_accuracy"]})
        rows.setdefault(f"last of {len(history)} epochs", []).append({"kept": history[-1]["epoch"], "stopped": None, "test_accuracy": history[-1]["test_accuracy"]})
    print(f"{'rule':72s} {'test accuracy':>14s}  per trace (epoch kept)")
    for name, per in rows.items():
        accuracies = [100 * r["test_accuracy"] for r in per]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"{name:72s} {statistics.fmean(accuracies):6.2f} ± {spread:4.2f}  "
              + " / ".join(f"{a:.2f} ({r['kept']})" for a, r in zip(accuracies, per)))
    if args.out:
        args.out.write_text(json.dumps({"traces": [str(p) for p in args.traces], "patience": PATIENCE, "rules": rows}, indent=1))


if __name__ == "__main__":
    main()
