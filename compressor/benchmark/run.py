"""The benchmark's settings, one seed (shared stages once, then every row from their caches), the
aggregation over seeds, and `run_benchmark`, which resumes where an interrupted run stopped."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gendistill.compressor.benchmark.measure import jsonable
from gendistill.compressor.benchmark.peers import (FASTTEXT_GRID, MODEL2VEC_DIMS, SETFIT_ITERATIONS, encoder_lr_row, model2vec_lr_row,
                                                   setfit_row, teacher_row, train_fasttext, train_tfidf_svm)
from gendistill.compressor.benchmark.report import MODELS, write_outputs
from gendistill.compressor.benchmark.students import measure_student, student_data, train_student_row
from gendistill.compressor.pipeline import settings_difference
from gendistill.runtime.bundle import write_json_atomic
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

ABLATIONS = {"lambda": "lam", "kd_temperature": "kd_temperature", "architecture": "architecture", "embeddings": "embeddings"}
"""ablation name -> the DistillSettings field it changes (on the generation-distillation student)."""
SYNTHESIS_ABLATIONS = {"sampler": "sampler", "top_k": "top_k"}
"""ablation name -> the SynthesizeSettings field it changes: these sample their own synthetic texts."""


@dataclass
class BenchmarkSettings:
    datasets: list[str] = field(default_factory=lambda: ["rotten-tomatoes", "bbc-news"])
    """Embedded dataset names or data files (as `gendistill compress DATA`)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One seeded split (and teacher, generator, students) per seed."""
    per_class: int = 100
    synthetic_counts: list[int] = field(default_factory=lambda: [0, 1000, 2500, 5000, 10000])
    """Points of the synthetic-count curve; the largest is what the shared stages generate."""
    oracle_curve: bool = True
    """Also train the oracle at every count of the curve (real unlabeled texts instead of synthetic)."""
    lambdas: list[float] = field(default_factory=list)
    kd_temperatures: list[float] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    """Ablation: sampling backends (hf, ctranslate2). Each synthesis ablation gets its own synthesize,
    annotate and distill stages (`synthesis_count` texts) from the seed's own teacher and generator, and
    is compared with the pipeline's student at the same count of synthetic texts."""
    top_ks: list[int] = field(default_factory=list)
    """Ablation: top-k of sampling (0 = the full distribution), as for `samplers`."""
    synthesis_count: int | None = None
    """Synthetic texts per synthesis ablation; a point of the curve (default: the largest count)."""
    export: bool = True
    """Export the student rows to int8 bundles (size and batch-1 latency); else only PyTorch figures."""
    latency_texts: int = 100
    """Test texts timed one at a time for each model's batch-1 latency."""
    time_budget_minutes: float | None = None
    """Start no further seed once this much wall time is spent or the next one (timed by its
    dataset's previous seed) would overrun it; the results then hold the seeds that finished."""
    pipeline: dict = field(default_factory=dict)
    """Pipeline settings by API name (as `compress(**settings)`) over the pipeline's own defaults."""
    model2vec_python: str | None = None
    """The Python of model2vec's own environment (`make model2vec-env`): with it, the `model2vec-lr` row is trained
    too (model2vec distilled from the teacher's encoder + logistic regression); without it, that row is left out."""
    setfit_encoder: str | None = None
    """The sentence encoder of the `setfit` row (an embedded name, hub name or folder; SetFit's usual small choice
    is embedded-minilm); None leaves the row out (on 2 CPU cores it takes about 15 minutes per seed with MiniLM)."""

    def __post_init__(self):
        if not self.datasets:
            raise GendistillError("Give at least one --dataset.")
        if not self.seeds:
            raise GendistillError("--seeds must be at least 1.")
        if self.per_class < 1:
            raise GendistillError(f"--per-class must be at least 1, not {self.per_class}.")
        if not self.synthetic_counts or min(self.synthetic_counts) < 0 or max(self.synthetic_counts) < 1:
            raise GendistillError("--synthetic-counts must be non-negative integers with at least one above 0, e.g. 0,250,500,1000.")
        self.synthetic_counts = sorted(set(self.synthetic_counts))
        for value in self.lambdas:
            if not 0.0 <= value <= 1.0:
                raise GendistillError(f"--lambdas values must lie in [0, 1], not {value}.")
        for value in self.kd_temperatures:
            if value <= 0:
                raise GendistillError(f"--kd-temperatures values must be positive, not {value}.")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise GendistillError("--time-budget-min must be positive.")
        if self.latency_texts < 1:
            raise GendistillError("--latency-texts must be at least 1.")
        for value in self.samplers:
            if value not in ("hf", "ctranslate2"):
                raise GendistillError(f"--samplers values must be hf or ctranslate2, not {value!r}.")
        for value in self.top_ks:
            if value < 0:
                raise GendistillError(f"--top-ks values must be 0 or more, not {value}.")
        if (self.samplers or self.top_ks) and self.synthesis_count is None:
            self.synthesis_count = max(self.synthetic_counts)
        if self.synthesis_count is not None and self.synthesis_count not in self.synthetic_counts:
            raise GendistillError(f"--synthesis-count {self.synthesis_count} must be one of --synthetic-counts, so the pipeline's own "
                                  "student at that count is there to compare with.")


def compress_settings(bench: BenchmarkSettings, dataset: str, seed: int):
    """The pipeline settings of the shared stages for one dataset and seed."""
    from gendistill.compressor.pipeline import build_settings

    return build_settings(dataset, **{
        **bench.pipeline, "seed": seed, "per_class": bench.per_class, "synthetic": max(bench.synthetic_counts), "no_export": True,
        "annotate_unlabeled": max(bench.synthetic_counts),  # the oracle's real unlabeled texts
        "labeled_only_baseline": False,  # the benchmark trains its own labeled-only row
    })


class _RowCache:
    """`<run>/benchmark/<row>.json`: a row's result, reused when it was made with the same settings."""

    def __init__(self, run_dir: Path):
        from gendistill.compressor.rundir import remove_temporaries

        self.root = run_dir / "benchmark"
        self.root.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.root)  # a row's write cut off by a kill

    def get(self, name: str, settings: dict) -> dict | None:
        path = self.root / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            # The pipeline's own reuse rule, device included: a row made before a setting existed is reused when the
            # setting asks for what it did, so an upgrade does not re-make cached rows it would make the same.
            if isinstance(saved.get("settings"), dict) and settings_difference(saved["settings"], jsonable(settings), ignore=()) is None:
                return saved["result"]
        return None

    def put(self, name: str, settings: dict, result: dict) -> dict:
        from gendistill.compressor.rundir import kill_point

        write_json_atomic(self.root / f"{name}.json", {"settings": jsonable(settings), "result": jsonable(result)})
        kill_point(f"benchmark:row:{name}")
        return result

    def work_dir(self, name: str) -> Path:
        """A fresh directory for a row's files (a leftover from an interrupted row is removed)."""
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


# --- one seed --------------------------------------------------------------------------------------


def synthesis_variant(settings, run_dir: Path, field_name: str, value, count: int) -> Path:
    """A sibling run that shares the seed's data, teacher and generator (hard links, nothing re-made) and
    synthesizes `count` texts with one synthesis setting changed; its distill stage is that setting's student."""
    from gendistill.compressor.pipeline import run_compress
    from gendistill.compressor.rundir import is_complete, kill_point, partial_path, read_json, replace_dir, stage_path

    variant = run_dir.with_name(f"{run_dir.name}-{field_name}-{value}")
    variant.mkdir(exist_ok=True)
    for stage in ("data", "teacher", "generator"):
        shared, own = stage_path(run_dir, stage), stage_path(variant, stage)
        if not is_complete(variant, stage) or read_json(own / "metrics.json") != read_json(shared / "metrics.json"):
            # Linked into <dir>.partial, metrics.json (the completion marker) last, then renamed into place:
            # a copy cut off by a kill never looks like a complete stage with files missing.
            partial = partial_path(variant, stage)
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(shared, partial, copy_function=os.link,
                            ignore=lambda folder, names, top=shared: ["metrics.json"] if Path(folder) == top else [])
            os.link(shared / "metrics.json", partial / "metrics.json")
            kill_point(f"{variant.name}/{stage}:linked")
            replace_dir(partial, own)
    shutil.copyfile(run_dir / "run.json", variant / "run.json")
    variant_settings = replace(settings, synthesize=replace(settings.synthesize, **{field_name: value, "count": count}),
                               distill=replace(settings.distill, labeled_only_baseline=False))
    run_compress(variant_settings, variant, redo_changed=True)
    return variant


def synthesis_defaults(run_dir: Path, settings) -> dict:
    """The synthesis settings the seed's own run used: its top-k, and the sampler `auto` resolved to."""
    from gendistill.compressor.rundir import read_json, stage_path

    return {"sampler": read_json(stage_path(run_dir, "synthesize") / "metrics.json").get("sampler"), "top_k": settings.synthesize.top_k}


def _student_plan(bench: BenchmarkSettings, distill) -> list[dict]:
    """Every student to train for one seed: name, DistillSettings, transfer, count, and the row/curve/ablation it feeds."""
    from gendistill.compressor.distill import labeled_only_settings

    top = max(bench.synthetic_counts)
    plan = [
        {"name": "student-labeled-only", "settings": labeled_only_settings(distill), "transfer": "none", "count": None, "labeled_only": True},
        {"name": "student-kd", "settings": distill, "transfer": "none", "count": None},
        {"name": "student-gendist", "settings": distill, "transfer": "synthetic", "count": top},
        {"name": "student-gendist-hard", "settings": replace(distill, teacher_labels="hard"), "transfer": "synthetic", "count": top},
        {"name": "student-oracle-unlabeled", "settings": distill, "transfer": "unlabeled", "count": top},
    ]
    for count in bench.synthetic_counts:
        if 0 < count < top:
            # The curve is of the first N texts sampled, none left out for the teacher's confidence.
            plan.append({"name": f"curve-synthetic-{count}", "settings": replace(distill, keep_confident=0), "transfer": "synthetic", "count": count})
            if bench.oracle_curve:
                plan.append({"name": f"curve-unlabeled-{count}", "settings": distill, "transfer": "unlabeled", "count": count})
    values = {"lambda": bench.lambdas, "kd_temperature": bench.kd_temperatures, "architecture": bench.architectures,
              "embeddings": bench.embeddings}
    for ablation, field_name in ABLATIONS.items():
        for value in values[ablation]:
            if value == getattr(distill, field_name):
                continue  # the default value is the student-gendist row itself
            plan.append({"name": f"ablation-{ablation}-{value}", "settings": replace(distill, **{field_name: value}),
                         "transfer": "synthetic", "count": top, "ablation": (ablation, value)})
    return plan


def run_seed(bench: BenchmarkSettings, dataset: str, seed: int, run_dir: Path) -> dict:
    """Shared stages once, then every row from their caches; returns {row name: result}."""
    from gendistill.compressor.pipeline import run_compress
    from gendistill.compressor.rundir import load_labels, load_split, read_json, stage_path
    from gendistill.compressor.distill import student_choices
    from gendistill.compressor.teacher import teacher_max_length

    settings = compress_settings(bench, dataset, seed)
    started = time.time()
    run_compress(settings, run_dir, redo_changed=True)  # the runs dir is a cache: new defaults re-make what they change
    shared_seconds = time.time() - started
    cache = _RowCache(run_dir)
    labels = load_labels(run_dir)
    k = len(labels)
    train_texts, train_y = load_split(run_dir, "train")
    dev_texts, dev_y = load_split(run_dir, "dev")
    test_texts, test_y = load_split(run_dir, "test")
    latency_texts = test_texts[: bench.latency_texts]
    results = {}

    def row(name: str, row_settings: dict, make):
        cached = cache.get(name, row_settings)
        if cached is not None:
            log.info("%s seed %d: %-28s done already (%.3f)", dataset, seed, name, cached["accuracy"])
            results[name] = cached
            return
        row_started = time.time()
        result = make()
        result["seconds"] = time.time() - row_started
        results[name] = cache.put(name, row_settings, result)
        log.info("%s seed %d: %-28s accuracy %.3f  macro-F1 %.3f  (%.0f s)", dataset, seed, name, result["accuracy"],
                 result["macro_f1"], result["seconds"])

    common = (train_texts, train_y, dev_texts, dev_y, test_texts, test_y, k)
    row("tfidf-svm", {"model": "tfidf-svm", "latency_texts": bench.latency_texts},
        lambda: train_tfidf_svm(*common, cache.work_dir("tfidf-svm"), latency_texts))
    row("fasttext", {"model": "fasttext", "seed": seed, "grid": FASTTEXT_GRID, "latency_texts": bench.latency_texts},
        lambda: train_fasttext(*common, cache.work_dir("fasttext"), latency_texts, seed=seed))
    teacher = replace(settings.teacher, max_length=teacher_max_length(run_dir))  # the length the run's teacher used (auto resolved)
    row("encoder-lr", {"model": "encoder-lr", "teacher": jsonable(asdict(teacher)), "data": settings.of("data"), "latency_texts": bench.latency_texts},
        lambda: encoder_lr_row(teacher, labels, train_texts, train_y, test_texts, test_y, latency_texts))
    if bench.model2vec_python:
        row("model2vec-lr", {"model": "model2vec-lr", "encoder": teacher.model, "dims": MODEL2VEC_DIMS, "data": settings.of("data"),
                             "latency_texts": bench.latency_texts},
            lambda: model2vec_lr_row(teacher, bench.model2vec_python, *common, latency_texts))
    if bench.setfit_encoder:
        row("setfit", {"model": "setfit", "encoder": bench.setfit_encoder, "iterations": SETFIT_ITERATIONS, "seed": seed,
                       "data": settings.of("data"), "latency_texts": bench.latency_texts},
            lambda: setfit_row(bench.setfit_encoder, seed, train_texts, train_y, test_texts, test_y, k, cache.work_dir("setfit"), latency_texts))
    teacher_id = read_json(stage_path(run_dir, "teacher") / "metrics.json")["stage_id"]
    row("teacher", {"model": "teacher", "teacher": teacher_id, "latency_texts": bench.latency_texts},
        lambda: teacher_row(run_dir, test_y, k, latency_texts, teacher.max_length))

    annotate_id = read_json(stage_path(run_dir, "annotate") / "metrics.json")["stage_id"]
    distill_id = read_json(stage_path(run_dir, "distill") / "metrics.json")["stage_id"]
    exported = set(MODELS) | {f"ablation-architecture-{a}" for a in bench.architectures}
    # Every student row has the pipeline's own student's length and architecture: its distill stage's saved ones (auto
    # resolved when it was made; run_compress above has re-made one an older auto rule chose, so they are today's).
    choices = student_choices(run_dir)
    for item in _student_plan(bench, replace(settings.distill, **choices)):
        name = item["name"]
        export = bench.export and name in exported
        row_settings = {"distill": asdict(item["settings"]), "transfer": item["transfer"], "count": item["count"],
                        "labeled_only": item.get("labeled_only", False), "annotate": annotate_id, "export": export,
                        "latency_texts": bench.latency_texts}

        def make(item=item, name=name, export=export):
            data = student_data(run_dir, item["settings"], item["transfer"], item["count"])
            work = cache.work_dir(name)
            if name == "student-gendist":  # exactly the pipeline's distill stage: reuse its student
                student_dir = work / "student"
                shutil.copytree(stage_path(run_dir, "distill") / "student", student_dir)
                dev_accuracy = read_json(stage_path(run_dir, "distill") / "metrics.json")["dev_accuracy"]
            else:
                student_dir, dev_accuracy = train_student_row(run_dir, item["settings"], data, work, desc=f"{name} seed {seed}",
                                                              labeled_only=item.get("labeled_only", False))
            result = measure_student(run_dir, student_dir, test_texts, test_y, k, export, latency_texts)
            result["transfer_texts"] = len(data["texts"]) - len(train_texts)
            result["dev_accuracy"] = dev_accuracy
            return result

        if name == "student-gendist":
            row_settings["distill_stage"] = distill_id
        row(name, row_settings, make)

    shipped = shipped_row(results, run_dir, cache.root)
    if shipped is not None:
        results["student-shipped"] = shipped

    shared_synthesis = synthesis_defaults(run_dir, settings)
    for ablation, values in (("sampler", bench.samplers), ("top_k", bench.top_ks)):
        for value in values:
            if value == shared_synthesis[ablation]:
                continue  # the pipeline's own student (at synthesis_count) is this row
            variant_started = time.time()
            variant = synthesis_variant(settings, run_dir, SYNTHESIS_ABLATIONS[ablation], value, bench.synthesis_count)
            variant_seconds = time.time() - variant_started  # its own synthesize, annotate and distill: part of the row's cost
            variant_id = read_json(stage_path(variant, "distill") / "metrics.json")["stage_id"]
            row(f"ablation-{ablation}-{value}", {"variant": [ablation, value], "distill_stage": variant_id, "latency_texts": bench.latency_texts},
                lambda variant=variant, variant_seconds=variant_seconds: {**measure_student(variant, stage_path(variant, "distill") / "student", test_texts, test_y, k, False,
                                                           latency_texts),
                                         **{key: read_json(stage_path(variant, "synthesize") / "metrics.json").get(key)
                                            for key in ("sampler", "kept", "kept_texts_per_second", "tokens_per_second")},
                                         "variant_seconds": variant_seconds})

    report = read_json(run_dir / "report.json")
    annotate_metrics = read_json(stage_path(run_dir, "annotate") / "metrics.json")
    return {
        "rows": results,
        "labels": labels,
        "splits": report["splits"],
        "shared_stage_seconds": report["seconds"],
        "shared_wall_seconds": shared_seconds,
        "generator": report.get("generator"),
        "synthetic": report.get("synthetic"),
        "teacher_dev_accuracy": read_json(stage_path(run_dir, "teacher") / "metrics.json")["dev_accuracy"],
        "synthetic_mean_max_probability": annotate_metrics.get("synthetic_mean_max_probability"),
        "synthetic_label_counts": annotate_metrics.get("synthetic_label_counts"),
        "unlabeled_available": len(load_split(run_dir, "unlabeled")[0]),
        "synthesis": shared_synthesis,
        "settings": jsonable({stage: settings.of(stage) for stage in settings.stages()}),
        # What `auto` chose for this seed's student and the teacher length it chose from: a later rule for them is
        # seen by recorded_seeds, which the requested settings ("auto") alone would hide.
        "student_choices": choices,
        "teacher_length": teacher.max_length,
    }


def shipped_row(rows: dict, run_dir: Path, rows_dir: Path) -> dict | None:
    """The student `compress` would ship (the distill stage's rule, on the two students saved under `rows_dir`): that row's
    figures, with `shipped` naming it and the dev texts the rule read (`dev_disagreement`)."""
    from gendistill.compressor.distill import dev_disagreement, dev_right, ships_labeled_only

    names = ("student-gendist", "student-labeled-only")
    if any(name not in rows or not (rows_dir / name / "student").is_dir() for name in names):
        return None
    disagreement = dev_disagreement(*(dev_right(rows_dir / name / "student", run_dir) for name in names))
    name = names[1] if ships_labeled_only(disagreement) else names[0]
    return {**rows[name], "shipped": name, "dev_disagreement": disagreement}


# --- aggregation -----------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _summary(per_seed: list[dict]) -> dict:
    accuracy_mean, accuracy_std = _mean_std([r["accuracy"] for r in per_seed])
    f1_mean, f1_std = _mean_std([r["macro_f1"] for r in per_seed])
    return {"accuracy_mean": accuracy_mean, "accuracy_std": accuracy_std, "macro_f1_mean": f1_mean, "macro_f1_std": f1_std,
            "accuracy_per_seed": [r["accuracy"] for r in per_seed]}


def aggregate(bench: BenchmarkSettings, seeds: dict[int, dict]) -> dict:
    """One dataset's results over seeds: rows, curve, ablations (means ± sample std)."""
    first = next(iter(seeds.values()))
    rows = []
    for model in MODELS:
        if any(model not in s["rows"] for s in seeds.values()):
            continue  # an optional row (OPTIONAL_ROWS) this benchmark was not asked for, or not on every seed
        per_seed = [s["rows"][model] for s in seeds.values()]
        row = {"model": model, **_summary(per_seed)}
        for key in ("params", "bytes", "latency_ms", "int8_accuracy", "fp32_bytes", "onnx_batch1_ms", "transfer_texts"):
            values = [r[key] for r in per_seed if r.get(key) is not None]
            if values:
                mean = float(np.mean(values))
                row[key] = int(round(mean)) if key in ("params", "bytes", "fp32_bytes", "transfer_texts") else mean
            elif key in ("params", "bytes", "latency_ms"):
                row[key] = None
        precisions = sorted({r["precision"] for r in per_seed if r.get("precision")})
        if precisions:
            row["precision"] = "/".join(precisions)
        if "tuned" in per_seed[0]:
            row["tuned_per_seed"] = [r["tuned"] for r in per_seed]
        if "shipped" in per_seed[0]:
            row["shipped_per_seed"] = [r["shipped"] for r in per_seed]
        rows.append(row)

    top = max(bench.synthetic_counts)
    curve = []
    for transfer in ("synthetic", "unlabeled") if bench.oracle_curve else ("synthetic",):
        for count in bench.synthetic_counts:
            if count == 0:
                name = "student-kd"
            elif count == top:
                name = "student-gendist" if transfer == "synthetic" else "student-oracle-unlabeled"
            else:
                name = f"curve-{transfer}-{count}"
            per_seed = [s["rows"][name] for s in seeds.values()]
            curve.append({"transfer": transfer, "count": count, "row": name, **_summary(per_seed),
                          "transfer_texts_per_seed": [r.get("transfer_texts", 0) for r in per_seed]})

    values = {"lambda": bench.lambdas, "kd_temperature": bench.kd_temperatures, "architecture": bench.architectures,
              "embeddings": bench.embeddings}
    defaults = first["settings"]["distill"]
    ablations = []
    for ablation, chosen in (("sampler", bench.samplers), ("top_k", bench.top_ks)):
        if not chosen:
            continue
        # The pipeline's own setting is the default; its student at synthesis_count is a point of the curve.
        shared = first["synthesis"][ablation]
        own_row = "student-gendist" if bench.synthesis_count == top else f"curve-synthetic-{bench.synthesis_count}"
        for value in sorted({*chosen, shared}, key=str):
            name = own_row if value == shared else f"ablation-{ablation}-{value}"
            per_seed = [s["rows"][name] for s in seeds.values()]
            ablations.append({"ablation": f"{ablation} ({bench.synthesis_count} synthetic texts)", "value": value, "default": value == shared,
                              "row": name, **_summary(per_seed), "params": int(np.mean([r["params"] for r in per_seed])), "latency_ms": None})
    for ablation, field_name in ABLATIONS.items():
        if not values[ablation]:
            continue
        for value in sorted({*values[ablation], defaults[field_name]}, key=str):
            name = "student-gendist" if value == defaults[field_name] else f"ablation-{ablation}-{value}"
            per_seed = [s["rows"][name] for s in seeds.values()]
            entry = {"ablation": ablation, "value": value, "default": value == defaults[field_name], "row": name, **_summary(per_seed),
                     "params": int(np.mean([r["params"] for r in per_seed]))}
            latencies = [r["latency_ms"] for r in per_seed if r.get("latency_ms") is not None]
            entry["latency_ms"] = float(np.mean(latencies)) if latencies else None
            ablations.append(entry)

    return {
        "seeds": list(seeds),
        "per_class": bench.per_class,
        "labels": first["labels"],
        "splits": first["splits"],
        "rows": rows,
        "synthetic_curve": curve,
        "ablations": ablations,
        "per_seed": {str(seed): s for seed, s in seeds.items()},
        "pipeline_settings": first["settings"],
    }


def _environment() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _seed_cost(seed_result: dict) -> float:
    """Compute seconds one seed took when it was made (shared stages + rows), even if now read from cache."""
    rows = seed_result["rows"].values()
    return seed_result["shared_stage_seconds"].get("total", 0.0) + sum(r.get("seconds", 0.0) + r.get("variant_seconds", 0.0) for r in rows)


def run_benchmark(bench: BenchmarkSettings, out_dir: str | Path, runs_dir: str | Path | None = None, command: str | None = None) -> dict:
    """Run (or resume) the whole benchmark; writes results.json, RESULTS.md and the plots into `out_dir`.

    Seeds run in the outer loop (seed 0 of every dataset first), and the outputs are rewritten after
    each finished seed, so a run stopped early, or by `time_budget_minutes`, still leaves complete
    results for the seeds it finished (results.json lists them per dataset).
    """
    from gendistill.compressor.rundir import remove_temporaries

    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else out_dir / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out_dir)  # a results.json write cut off by a kill
    started = time.time()
    done: dict[str, dict[int, dict]] = {_dataset_slug(d): {} for d in bench.datasets}
    recorded = recorded_seeds(bench, out_dir)
    skipped = []
    results = {}
    skips_written = None  # how many skipped seeds the outputs on disk list (None: nothing written by this call)

    def collect():
        nonlocal results
        results = {
            "schema_version": 1,
            "command": command,
            "benchmark_settings": jsonable(asdict(bench)),
            "environment": _environment(),
            "wall_seconds": time.time() - started,
            "skipped_for_time_budget": skipped,
            "datasets": {name: aggregate(bench, seeds) for name, seeds in done.items() if seeds},
        }

    for seed in bench.seeds:
        for dataset in bench.datasets:
            slug = _dataset_slug(dataset)
            if seed in recorded.get(slug, {}):
                log.info("%s seed %d: read from %s (made with the same settings)", dataset, seed, out_dir / "results.json")
                done[slug][seed] = recorded[slug][seed]
                continue
            elapsed = time.time() - started
            estimate = max((_seed_cost(r) for r in done[slug].values()), default=0.0)
            if bench.time_budget_minutes is not None and elapsed + estimate > 60 * bench.time_budget_minutes:
                log.info("skipping %s seed %d: %.0f min spent, about %.0f more needed, budget %.0f min", dataset, seed,
                         elapsed / 60, estimate / 60, bench.time_budget_minutes)
                skipped.append({"dataset": slug, "seed": seed})
                continue
            log.info("== %s, seed %d ==", dataset, seed)
            seed_started = time.time()
            result = run_seed(bench, dataset, seed, runs_dir / slug / f"seed{seed}")
            result["wall_seconds"] = time.time() - seed_started
            result["compute_seconds"] = _seed_cost(result)
            done[slug][seed] = result
            log.info("%s seed %d finished in %.0f s", dataset, seed, result["wall_seconds"])
            collect()
            write_outputs(results, out_dir)
            skips_written = len(skipped)
    if not any(done.values()):
        raise GendistillError("The time budget allowed no seed at all; raise --time-budget-min.")
    collect()
    if skips_written is None:  # every seed read back: the committed files keep their date and machine, not this invocation's
        log.info("no new seed measured: %s left as it was", out_dir)
    elif skips_written != len(skipped):  # seeds the time budget skipped after the last write
        write_outputs(results, out_dir)
    return results


BENCHMARK_ONLY = ("seeds", "time_budget_minutes")
"""Benchmark settings that decide which seeds run, not what a seed measures."""


def recorded_seeds(bench: BenchmarkSettings, out_dir: Path) -> dict[str, dict[int, dict]]:
    """{dataset: {seed: result}} for the seeds OUT/results.json already holds, made with this benchmark's settings and
    today's pipeline settings for that seed: they are read back, not re-run. The run directories are a cache on one
    machine; results.json is committed, so a benchmark of several seeds can be finished a seed at a time, on machines
    that never saw the others' runs. Delete results.json (or give another --out) to measure them again."""
    from gendistill.compressor.distill import auto_choices_difference
    from gendistill.compressor.pipeline import settings_difference

    path = out_dir / "results.json"
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        saved_bench = {k: v for k, v in previous["benchmark_settings"].items() if k not in BENCHMARK_ONLY}
        datasets = previous["datasets"]
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s is unreadable: every seed is measured again", path)
        return {}
    wanted_bench = {k: v for k, v in jsonable(asdict(bench)).items() if k not in BENCHMARK_ONLY}
    difference = settings_difference(saved_bench, wanted_bench, ignore=())
    if difference is not None:
        log.info("%s was made with other benchmark settings (%s): every seed is measured again", path, difference)
        return {}
    recorded = {}
    for dataset in bench.datasets:
        slug = _dataset_slug(dataset)
        saved = datasets.get(slug, {})
        for key, seed_result in saved.get("per_seed", {}).items():
            seed = int(key)
            # Seeds recorded before per-seed settings were kept have only the first seed's, as pipeline_settings.
            made_with = seed_result.get("settings") or (saved.get("pipeline_settings") if seed == saved["seeds"][0] else None)
            settings = compress_settings(bench, dataset, seed)
            wanted = jsonable({stage: settings.of(stage) for stage in settings.stages()})
            difference = settings_difference(made_with, wanted) if made_with is not None else "its settings were not kept"
            if difference is None and "student_choices" in seed_result:
                choice = auto_choices_difference(seed_result["student_choices"], settings.distill, seed_result["teacher_length"])
                difference = f"distill.{choice}" if choice else None
            if difference is None:
                recorded.setdefault(slug, {})[seed] = {**seed_result, "settings": made_with}
            elif seed in bench.seeds:
                log.info("%s seed %d in %s was made with other settings (%s): measured again", slug, seed, path, difference)
    return recorded


def _dataset_slug(dataset: str) -> str:
    return Path(dataset).stem if Path(dataset).suffix else Path(dataset).name
