"""Student choices side by side on one finished run: architecture x initial vectors x transfer text, 3 seeds.

Every variant trains through the distill stage's own `distill_student` on the run's own annotations (the
same teacher logits, synthetic and real texts), with only the named settings changed and the student's seed
varied (the split, teacher and synthetic texts stay fixed: this isolates the student's own choices; the
benchmark varies everything). Each student is exported as the pipeline exports it (int8 when it passes its
checks) and scored on the test split: torch accuracy, bundle accuracy, bundle bytes and batch-1 latency
(1 thread). Resumes: a variant already in the results file with the same settings is not re-trained (a setting
added since it was measured counts as its ADDED_LATER value, as for a run's stages).

    python benchmarks/student/ablate.py runs/demo benchmarks/student/results.json \\
        --variant kim-cnn:teacher:synthetic --variant static:teacher-output:synthetic ...

A variant is ARCHITECTURE:EMBEDDINGS:TRANSFER[:key=value,...] with TRANSFER one of synthetic, unlabeled
(the real unlabeled texts the run annotated: `--annotate-unlabeled N`), both joined by `+`, none (labels +
real KD only), labeled-only (no teacher), and extra DistillSettings fields after the third colon
(e.g. static:teacher-output:synthetic:embed_dim=64,vocab_size=12000), and `count=N` for the first N transfer
texts only (the synthetic-count curve), with `select=confidence|similarity` the N that score highest (the teacher's
confidence, TF-IDF similarity to the nearest training text) instead of the first N. `keep_confident=N` keeps the surest
N synthetic texts, or the run's keep_share of them when that is more (runs made before --keep-share read as 0: exactly N).
"""

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.benchmark.students import export_student, measure_student, student_data
from gendistill.compressor.distill import DistillSettings, distill_student
from gendistill.compressor.pipeline import ADDED_LATER, settings_difference
from gendistill.compressor.rundir import load_labels, load_split, read_json, stage_path
from gendistill.runtime.settings import value_type


def setting_value(cls, field: str, text: str):
    """`text` as the settings class `cls` types `field` (1/true/yes for a flag)."""
    kind = value_type(cls, field)
    return text.lower() in ("1", "true", "yes") if kind is bool else kind(text)


def parse(spec: str) -> tuple[dict, str]:
    architecture, embeddings, transfer, *rest = spec.split(":")
    values = {"architecture": architecture, "embeddings": embeddings}
    fields = {f.name for f in dataclasses.fields(DistillSettings)}
    for pair in (rest[0].split(",") if rest else []):
        key, value = pair.split("=")
        values[key] = setting_value(DistillSettings, key, value) if key in fields else value
    return values, transfer


def save(path: Path, results: dict, entry: dict) -> None:
    """Update the variant's mean and spread (of the bundle's accuracy: int8 when it shipped int8) and write the file."""
    accuracies = [s["int8_accuracy"] if s.get("int8_accuracy") is not None else s["accuracy"] for s in entry["per_seed"].values()]
    entry["bundle_accuracy"] = statistics.fmean(accuracies)
    entry["bundle_accuracy_std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


def run_settings(run_dir: Path) -> DistillSettings:
    """The run's own distill settings, the base every variant changes."""
    saved = read_json(stage_path(run_dir, "distill") / "settings.json")
    # A run made before --keep-share kept exactly --keep-confident texts, and so did every variant measured on it:
    # read it that way, so `keep_confident=N` still means N there (on newer runs, add keep_share=0 for that).
    saved.setdefault("keep_share", ADDED_LATER["keep_share"])
    return DistillSettings.from_saved(saved)


def main(argv: list[str] | None = None, probe: dict[str, str] | None = None):
    """`probe`: keys and values a probe script that wraps this one (token_targets.py, training_probe.py) adds to every
    variant's name, so its students and results stay apart from this script's own; the probe applies them itself."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reexport", action="store_true",
                        help="Only export the variants' students again (after a change to the export) and update their bundle figures.")
    args = parser.parse_args(argv)
    probe = probe or {}
    suffix = ",".join(f"{key}={value}" for key, value in probe.items())
    variants = [f"{spec}{',' if spec.count(':') >= 3 else ':'}{suffix}" if suffix else spec for spec in args.variant]
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"run_dir": str(args.run_dir), "variants": {}}
    base = run_settings(args.run_dir)
    test_texts, test_y = load_split(args.run_dir, "test")
    k = len(load_labels(args.run_dir))
    teacher_test = load_annotations(args.run_dir, "test").argmax(1)
    work = args.run_dir / "student-ablation"
    for spec in variants:
        values, transfer = parse(spec)
        if transfer == "labeled-only":
            # The variant's own architecture and vectors, not the pipeline's choice for its labeled-only student.
            values.setdefault("labeled_only_student", "same")
            values.setdefault("labeled_only_embeddings", "same")
        entry = results["variants"].setdefault(spec, {"per_seed": {}})
        for seed in range(args.seeds):
            settings = dataclasses.replace(base, seed=seed, **{k: v for k, v in values.items() if k not in ("count", "select", *probe)})
            student_dir = work / spec.replace(":", "_").replace(",", "_").replace("=", "-") / f"seed{seed}" / "student"
            if args.reexport:
                if str(seed) in entry["per_seed"] and student_dir.is_dir():
                    entry["per_seed"][str(seed)].update(export_student(args.run_dir, student_dir, test_texts[:200]))
                    save(args.results, results, entry)
                continue
            saved = entry["per_seed"].get(str(seed), {}).get("settings")
            if saved is not None and settings_difference(saved, dataclasses.asdict(settings), ignore=()) is None:
                continue  # measured already (a setting added since reads as its ADDED_LATER value, as a stage's would)
            count = int(values["count"]) if "count" in values else None
            data = student_data(args.run_dir, settings, "none" if transfer in ("none", "labeled-only") else transfer, count, values.get("select"))
            shutil.rmtree(student_dir.parent, ignore_errors=True)
            tick = time.time()
            metrics = distill_student(settings, args.run_dir, data, student_dir, labeled_only=transfer == "labeled-only", desc=f"{spec} seed {seed}")
            seconds = time.time() - tick
            measured = measure_student(args.run_dir, student_dir, test_texts, test_y, k, True, test_texts[:200], teacher_test)
            entry["per_seed"][str(seed)] = {"settings": dataclasses.asdict(settings), "train_seconds": seconds, "dev_accuracy": metrics["dev_accuracy"],
                                            "training_texts": metrics["training_texts"], "coverage": metrics["embedding_coverage"], **measured}
            save(args.results, results, entry)
            print(f"{spec} seed {seed}: torch {measured['accuracy']:.4f} bundle {measured.get('int8_accuracy')} "
                  f"agreement {measured['test_agreement']:.3f} "
                  f"{measured.get('bytes')} B {measured.get('latency_ms')} ms ({seconds:.0f} s)", file=sys.stderr, flush=True)
    for spec, entry in results["variants"].items():
        print(f"{spec:60s} {100 * entry['bundle_accuracy']:.1f} ± {100 * entry['bundle_accuracy_std']:.1f}  (n={len(entry['per_seed'])})")


if __name__ == "__main__":
    main()
