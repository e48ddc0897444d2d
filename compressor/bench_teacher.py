"""`gendistill bench-teacher`: teacher recipes side by side, over seeds, on the benchmark's own splits.

Each teacher is `RECIPE/MODEL/MAX_LENGTH` (e.g. `frozen/embedded/128`, `finetune/embedded/128`,
`frozen/embedded-minilm/128`). Per dataset and seed, every teacher gets its own run directory under
RUNS/<dataset>/seed<k>/<teacher>/ with the seeded split (the same one `gendistill benchmark` draws, from
the same settings) and the teacher stage, then its calibrated logits on the test split (torch, fp32).
Reported per teacher: test accuracy and macro-F1 (mean ± sample std over seeds, and per seed), dev
accuracy, the fitted temperature, expected calibration error on test, and seconds (stage + test pass).

Resumable: a finished teacher stage and test pass are reused when their settings match.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gendistill.runtime.errors import GendistillError

RECIPES = ("frozen", "finetune")


def parse_teacher(spec: str) -> dict:
    parts = spec.split("/")
    if len(parts) not in (3, 4) or parts[0] not in RECIPES or not parts[2].isdigit() or parts[3:] not in ([], ["bf16"]):
        raise GendistillError(f"--teachers entries are RECIPE/MODEL/MAX_LENGTH[/bf16] with RECIPE in {', '.join(RECIPES)} (e.g. frozen/embedded/128, "
                              f"finetune/embedded/128/bf16), not {spec!r}.")
    return {"teacher_recipe": parts[0], "teacher": parts[1], "max_length": int(parts[2]), "teacher_precision": parts[3] if parts[3:] else "fp32"}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)


def bench_one(dataset: str, seed: int, per_class: int, spec: str, runs_dir: Path) -> dict:
    from gendistill.compressor.data import run_data
    from gendistill.compressor.evaluate import reliability
    from gendistill.compressor.pipeline import build_settings, settings_difference
    from gendistill.compressor.rundir import is_complete, load_split, read_json, stage_path
    from gendistill.compressor.teacher import load_teacher, run_teacher, teacher_logits
    from gendistill.compressor.training import accuracy, macro_f1

    values = parse_teacher(spec)
    settings = build_settings(dataset, seed=seed, per_class=per_class, no_export=True, **values)
    run_dir = runs_dir / _slug(dataset) / f"seed{seed}" / _slug(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_complete(run_dir, "data"):
        run_data(settings.data, run_dir)
    wanted = json.loads(json.dumps(asdict(settings.teacher)))
    saved = read_json(stage_path(run_dir, "teacher") / "settings.json") if is_complete(run_dir, "teacher") else None
    test_file = run_dir / "test_logits.npy"
    if saved is None or settings_difference(saved, wanted):  # the pipeline's own reuse rule
        run_teacher(settings.teacher, run_dir)
        test_file.unlink(missing_ok=True)
    metrics = read_json(stage_path(run_dir, "teacher") / "metrics.json")
    test_texts, test_y = load_split(run_dir, "test")
    labels = json.loads((stage_path(run_dir, "data") / "labels.json").read_text())
    timing = run_dir / "test_seconds.json"
    if not test_file.is_file():
        model, tokenizer = load_teacher(run_dir)
        tick = time.time()
        logits = teacher_logits(model, tokenizer, test_texts, values["max_length"], desc=f"{spec} seed {seed}: test")
        timing.write_text(json.dumps(time.time() - tick))
        np.save(test_file, logits)
    logits = np.load(test_file)
    test_seconds = json.loads(timing.read_text())
    return {"test_accuracy": accuracy(logits.argmax(1), test_y), "test_macro_f1": macro_f1(logits.argmax(1), test_y, len(labels)),
            "dev_accuracy": metrics["dev_accuracy"], "temperature": metrics.get("temperature"), "best_epoch": metrics.get("best_epoch"),
            "kept_by": "dev loss" if any("dev_loss" in h for h in metrics["history"]) else None,
            "training_precision": metrics.get("training_precision"),
            "ece": reliability(logits, test_y)["ece"], "teacher_seconds": metrics["seconds"], "test_seconds": test_seconds,
            "test_texts_per_second": len(test_texts) / max(test_seconds, 1e-9), "params": metrics["params"]}


def bench_teacher(datasets: list[str], seeds: int, per_class: int, teachers: list[str], runs_dir: Path, out: Path | None, command: str) -> dict:
    for spec in teachers:
        parse_teacher(spec)
    results = {"commands": [], "per_class": per_class, "seeds": list(range(seeds)), "datasets": {}}
    if out and (out / "results.json").is_file():  # resume: keep what was measured before, rows re-checked below
        before = json.loads((out / "results.json").read_text())
        results["datasets"] = before.get("datasets", {})
        results["commands"] = before.get("commands", [before["command"]] if "command" in before else [])
    if command not in results["commands"]:  # every command that made a row here
        results["commands"].append(command)
    for dataset in datasets:
        rows = results["datasets"].setdefault(dataset, {})
        for spec in teachers:
            per_seed = rows.setdefault(spec, {}).setdefault("per_seed", {})
            for seed in range(seeds):
                per_seed[str(seed)] = bench_one(dataset, seed, per_class, spec, runs_dir)
                summarise(rows[spec])
                if out:
                    write(results, out)
    return results


def summarise(row: dict) -> None:
    seeds = list(row["per_seed"].values())
    for key in ("test_accuracy", "test_macro_f1", "dev_accuracy", "ece", "teacher_seconds", "test_texts_per_second"):
        values = [s[key] for s in seeds]
        row[key] = statistics.fmean(values)
        row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0


def render(results: dict) -> str:
    lines = ["# Teacher recipes", "", "Made by (a later command re-makes the rows it names; the rows are the latest of each):", "", "```",
             *results["commands"], "```", "",
             f"{results['per_class']} labeled texts per class; each seed its own split (the benchmark's). Test accuracy and macro-F1 in %, "
             "mean ± sample std over seeds; ECE = expected calibration error of the calibrated teacher on test; seconds = teacher stage "
             "(encode + fit, or fine-tune) on 2 CPU cores, so only rows made on the same day compare; test texts/s = the torch fp32 "
             "teacher on the test split; epochs kept = the fine-tuning epoch kept per seed (0 = the frozen start) and the dev score that "
             "chose it."]
    for dataset, rows in results["datasets"].items():
        lines += ["", f"## {dataset}", "", "| teacher (recipe/encoder/max length) | test accuracy | per seed | macro-F1 | dev accuracy | ECE | "
                  "epochs kept | seconds | test texts/s |", "|---|---|---|---|---|---|---|---|---|"]
        for spec, row in rows.items():
            seeds = list(row["per_seed"].values())
            per_seed = " / ".join(f"{100 * s['test_accuracy']:.1f}" for s in seeds)
            # Rows made before the teacher kept its epoch by dev loss (main 34659bc and earlier) have no `kept_by`.
            kept = "—" if spec.startswith("frozen/") else f"{'/'.join(str(s['best_epoch']) for s in seeds)} ({seeds[0].get('kept_by') or 'dev accuracy'})"
            lines.append(f"| {spec} | {100 * row['test_accuracy']:.1f} ± {100 * row['test_accuracy_std']:.1f} | {per_seed} | "
                         f"{100 * row['test_macro_f1']:.1f} | {100 * row['dev_accuracy']:.1f} | {100 * row['ece']:.1f} | {kept} | "
                         f"{row['teacher_seconds']:.0f} | {row['test_texts_per_second']:.1f} |")
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> None:
    from gendistill.runtime.bundle import write_json_atomic, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "RESULTS.md", render(results))
