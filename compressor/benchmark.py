"""The benchmark: the papers' tables (generation-distillation Table 1, Figure 2, Table 2; GAL's λ and
oracle) re-measured on real data, against the tools users pick instead.

For each dataset and seed the pipeline's shared stages run once (`run_compress` into
`RUNS/<dataset>/seed<k>/`: seeded split, teacher, generator, the largest number of synthetic texts,
teacher annotations incl. the real unlabeled texts for the oracle, and the generation-distillation
student). Every row is then trained from those caches:

    tfidf-svm                 TF-IDF + LinearSVC, C and n-grams chosen on dev
    fasttext                  fastText supervised, lr / epochs / word n-grams chosen on dev
    teacher                   the fine-tuned teacher (its test logits from the annotate stage)
    student-labeled-only      the student, cross-entropy on the labeled texts only
    student-kd                + plain KD on the same labeled texts (no transfer set)
    student-gendist           + KD on the synthetic texts (the pipeline's own student)
    student-gendist-hard      same, teacher argmax instead of soft labels
    student-oracle-unlabeled  same, real unlabeled texts instead of synthetic ones (GAL's upper bound)

plus the synthetic-count curve (prefixes of the synthetic texts, and of the unlabeled ones) and one
ablation per requested value (λ, KD temperature, architecture, embedding initialisation). Each student
builds its own tokenizer from the texts it trains on, as `run_distill` would for that training set.

Every finished row is cached as `RUNS/<dataset>/seed<k>/benchmark/<row>.json` with the settings that
made it, so an interrupted benchmark resumes where it stopped.

Sizes ("bytes") are the files needed to predict: the teacher's weights + tokenizer + config, the
student's int8 model.onnx + tokenizer.model, the TF-IDF vocabulary + weights, the fastText .bin.
Latency is the median batch-1 wall time of one text, raw string in, scores out, 1 thread, each model
in its own runtime (runtime.Classifier / onnxruntime for students, PyTorch for the teacher,
scikit-learn and fastText for the peers).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from runtime.bundle import write_json_atomic, write_text_atomic
from runtime.errors import GendistillError

log = logging.getLogger(__name__)

MODELS = ("tfidf-svm", "fasttext", "teacher", "student-labeled-only", "student-kd", "student-gendist",
          "student-gendist-hard", "student-oracle-unlabeled")
ROW_KEYS = ("model", "accuracy_mean", "accuracy_std", "macro_f1_mean", "params", "bytes", "latency_ms")
ABLATIONS = {"lambda": "alpha", "kd_temperature": "temperature", "architecture": "architecture", "embeddings": "embeddings"}
"""ablation name -> the DistillSettings field it changes (on the generation-distillation student)."""


@dataclass
class BenchmarkSettings:
    datasets: list[str] = field(default_factory=lambda: ["rotten-tomatoes", "bbc-news"])
    """Embedded dataset names or data files (as `gendistill compress DATA`)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One seeded split (and teacher, generator, students) per seed."""
    per_class: int = 100
    synthetic_counts: list[int] = field(default_factory=lambda: [0, 250, 500, 1000])
    """Points of the synthetic-count curve; the largest is what the shared stages generate."""
    oracle_curve: bool = True
    """Also train the oracle at every count of the curve (real unlabeled texts instead of synthetic)."""
    lambdas: list[float] = field(default_factory=list)
    kd_temperatures: list[float] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    export: bool = True
    """Export the student rows to int8 bundles (size and batch-1 latency); else only PyTorch figures."""
    latency_texts: int = 100
    """Test texts timed one at a time for each model's batch-1 latency."""
    time_budget_minutes: float | None = None
    """Start no further seed once this much wall time is spent or the next one (timed by its
    dataset's previous seed) would overrun it; the results then hold the seeds that finished."""
    pipeline: dict = field(default_factory=dict)
    """Options for `compressor.commands.build_settings` over the pipeline's own defaults."""

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


# --- settings --------------------------------------------------------------------------------------


def pipeline_defaults() -> dict:
    """The defaults of `gendistill compress`'s options, read from the command itself (never copied)."""
    import click

    from compressor.commands import pipeline_options

    command = click.command()(pipeline_options(lambda **kwargs: None))
    with click.Context(command) as ctx:
        return {p.name: p.get_default(ctx) for p in command.params}


def compress_settings(bench: BenchmarkSettings, dataset: str, seed: int):
    """The pipeline settings of the shared stages for one dataset and seed."""
    from compressor.commands import build_settings

    options = {**pipeline_defaults(), **bench.pipeline, "seed": seed, "per_class": bench.per_class,
               "synthetic": max(bench.synthetic_counts), "no_export": True}
    sizes = {k: options.pop(k) for k in ("dev_size", "test_size") if k in options}
    settings = build_settings(dataset, **sizes, **options)
    settings.annotate.unlabeled = max(bench.synthetic_counts)  # the oracle's real unlabeled texts
    settings.distill.labeled_only_baseline = False  # the benchmark trains its own labeled-only row
    return settings


# --- small helpers ---------------------------------------------------------------------------------


def _scores(predictions, targets, num_labels: int) -> dict:
    from compressor.training import accuracy, macro_f1

    return {"accuracy": accuracy(predictions, targets), "macro_f1": macro_f1(predictions, targets, num_labels)}


def _median_ms(function, inputs: list, warmup: int = 5) -> float:
    for item in inputs[:warmup]:
        function(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _files_bytes(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file())


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


class _RowCache:
    """`<run>/benchmark/<row>.json`: a row's result, reused when it was made with the same settings."""

    def __init__(self, run_dir: Path):
        self.root = run_dir / "benchmark"
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, settings: dict) -> dict | None:
        path = self.root / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("settings") == _jsonable(settings):
                return saved["result"]
        return None

    def put(self, name: str, settings: dict, result: dict) -> dict:
        write_json_atomic(self.root / f"{name}.json", {"settings": _jsonable(settings), "result": _jsonable(result)})
        return result

    def work_dir(self, name: str) -> Path:
        """A fresh directory for a row's files (a leftover from an interrupted row is removed)."""
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


# --- the peers -------------------------------------------------------------------------------------


def train_tfidf_svm(train_texts, train_y, dev_texts, dev_y, test_texts, test_y, num_labels: int, work_dir: Path,
                    latency_texts: list[str]) -> dict:
    """TF-IDF (sublinear tf) + LinearSVC; C in 10^-2..10^2 and n-grams (1,1)/(1,2) chosen on dev accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from compressor.training import accuracy

    best = None
    for ngrams in ((1, 1), (1, 2)):
        vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True, lowercase=True)
        x_train, x_dev = vectorizer.fit_transform(train_texts), None
        x_dev = vectorizer.transform(dev_texts)
        for c in (0.01, 0.1, 1.0, 10.0, 100.0):
            svm = LinearSVC(C=c, max_iter=10000).fit(x_train, train_y)
            dev_accuracy = accuracy(svm.predict(x_dev), dev_y)
            if best is None or dev_accuracy > best[0]:
                best = (dev_accuracy, ngrams, c, vectorizer, svm)
    dev_accuracy, ngrams, c, vectorizer, svm = best
    scores = _scores(svm.predict(vectorizer.transform(test_texts)), test_y, num_labels)
    # What a deployment would ship: the vocabulary (JSON), idf and weights (npz); no pickle.
    vocabulary = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
    (work_dir / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    np.savez(work_dir / "weights.npz", idf=vectorizer.idf_.astype(np.float32), coef=svm.coef_.astype(np.float32),
             intercept=svm.intercept_.astype(np.float32))
    latency = _median_ms(lambda t: svm.decision_function(vectorizer.transform([t])), latency_texts)
    return {**scores, "params": int(svm.coef_.size + svm.intercept_.size + vectorizer.idf_.size),
            "bytes": _files_bytes([work_dir / "vocabulary.json", work_dir / "weights.npz"]), "latency_ms": latency,
            "tuned": {"C": c, "ngram_range": list(ngrams), "dev_accuracy": dev_accuracy}}


def _fasttext_line(text: str) -> str:
    import re

    # fastText reads one example per line and splits on whitespace: lowercase and split off punctuation.
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


# The grid reaches 200 epochs: on 500 bbc-news articles fastText needs 100-200 to converge (50 epochs: 80% test
# accuracy, 200: 90%); on rotten-tomatoes every setting lands within 57-59%.
FASTTEXT_GRID = {"wordNgrams": (1, 2), "lr": (0.1, 0.5, 1.0), "epoch": (10, 50, 100, 200)}


def train_fasttext(train_texts, train_y, dev_texts, dev_y, test_texts, test_y, num_labels: int, work_dir: Path,
                   latency_texts: list[str], seed: int = 0) -> dict:
    """fastText supervised (1 thread, deterministic); lr, epochs and word n-grams chosen on dev accuracy."""
    try:
        import fasttext
    except ImportError:
        raise GendistillError('The fasttext row needs a fastText binding: pip install "gendistill[benchmark]".') from None
    from compressor.training import accuracy

    train_file = work_dir / "train.txt"
    train_file.write_text("".join(f"__label__{y} {_fasttext_line(t)}\n" for t, y in zip(train_texts, train_y)), encoding="utf-8")

    def predict(model, texts):
        labels, _ = model.predict([_fasttext_line(t) for t in texts], k=1)
        return [int(row[0].removeprefix("__label__")) for row in labels]

    best, failures = None, 0
    for word_ngrams, lr, epoch in itertools.product(*FASTTEXT_GRID.values()):
        try:
            model = fasttext.train_supervised(
                str(train_file), lr=lr, epoch=epoch, wordNgrams=word_ngrams, dim=100, minCount=1, thread=1,
                bucket=200_000 if word_ngrams > 1 else 0, seed=seed, verbose=0,
            )
        except RuntimeError:  # fastText aborts with "Encountered NaN" when a learning rate diverges
            failures += 1
            continue
        dev_accuracy = accuracy(predict(model, dev_texts), dev_y)
        if best is None or dev_accuracy > best[0]:
            best = (dev_accuracy, {"lr": lr, "epoch": epoch, "wordNgrams": word_ngrams}, model)
    if best is None:
        raise GendistillError("Every fastText configuration diverged; the fasttext row could not be trained.")
    dev_accuracy, tuned, model = best
    scores = _scores(predict(model, test_texts), test_y, num_labels)
    model.save_model(str(work_dir / "model.bin"))
    lines = [_fasttext_line(t) for t in latency_texts]
    latency = _median_ms(lambda line: model.predict(line, k=-1), lines)
    params = int(model.get_input_matrix().size + model.get_output_matrix().size)
    train_file.unlink()
    return {**scores, "params": params, "bytes": _files_bytes([work_dir / "model.bin"]), "latency_ms": latency,
            "tuned": {**tuned, "dev_accuracy": dev_accuracy, "diverged_configs": failures}}


# --- the teacher -----------------------------------------------------------------------------------


def teacher_row(run_dir: Path, test_y, num_labels: int, latency_texts: list[str], max_length: int) -> dict:
    import torch

    from compressor.annotate import load_annotations
    from compressor.rundir import read_json, stage_path
    from compressor.teacher import load_teacher

    scores = _scores(load_annotations(run_dir, "test").argmax(1), test_y, num_labels)
    model_dir = stage_path(run_dir, "teacher") / "model"
    model, tokenizer = load_teacher(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            latency = _median_ms(lambda t: model(**tokenizer([t], truncation=True, max_length=max_length, return_tensors="pt")).logits,
                                 latency_texts)
    finally:
        torch.set_num_threads(threads)
    needed = [p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".json", ".txt", ".model") and p.name != "training_args.json"]
    return {**scores, "params": read_json(stage_path(run_dir, "teacher") / "metrics.json")["params"],
            "bytes": _files_bytes(needed), "latency_ms": latency}


# --- the students ----------------------------------------------------------------------------------


def student_data(run_dir: Path, settings, transfer: str, count: int | None) -> dict:
    """The training set of one student: `transfer` is none, synthetic or unlabeled; `count` a prefix of it."""
    from compressor.distill import training_set
    from compressor.rundir import load_split

    data = training_set(run_dir, settings, transfer=transfer)
    if transfer != "none" and count is not None:
        keep = len(load_split(run_dir, "train")[0]) + count
        data = {"texts": data["texts"][:keep], "hard": data["hard"][:keep], "soft": data["soft"][:keep]}
    return data


def train_student_row(run_dir: Path, settings, data: dict, work_dir: Path, desc: str, labeled_only: bool = False) -> Path:
    """Train one student on `data` the way `run_distill` does; saves it to `work_dir/student/`."""
    from compressor.distill import prepare_student, train_student
    from compressor.rundir import load_labels, load_split
    from compressor.student import save_student

    dev_texts, dev_y = load_split(run_dir, "dev")
    student_dir = work_dir / "student"
    student_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, config, vectors, _ = prepare_student(settings, run_dir, data["texts"], len(load_labels(run_dir)), student_dir)
    if labeled_only:  # the pipeline's labeled-only baseline: true labels, no teacher
        settings = replace(settings, alpha=1.0)
        data = {**data, "soft": None}
    model, _ = train_student(config, tokenizer, vectors, dev_texts=dev_texts, dev_y=dev_y, settings=settings, desc=desc, **data)
    save_student(model, config, student_dir)
    return student_dir


def measure_student(run_dir: Path, student_dir: Path, test_texts, test_y, num_labels: int, export: bool,
                    latency_texts: list[str]) -> dict:
    """Test scores in PyTorch; with `export`, the int8 bundle's accuracy, size and batch-1 latency too."""
    from compressor.student import StudentTokenizer, count_parameters, load_student, predict_logits

    model, config = load_student(student_dir)
    tokenizer = StudentTokenizer(student_dir / "tokenizer.model", config)
    result = {**_scores(predict_logits(model, tokenizer, test_texts).argmax(1), test_y, num_labels),
              "params": count_parameters(model), "vocab_size": config.vocab_size,
              "fp32_bytes": _files_bytes([student_dir / "student.safetensors", student_dir / "tokenizer.model"]),
              "bytes": None, "latency_ms": None, "int8_accuracy": None}
    if export:
        result.update(export_student(run_dir, student_dir, test_texts, test_y, latency_texts))
    return result


def export_student(run_dir: Path, student_dir: Path, test_texts, test_y, latency_texts: list[str]) -> dict:
    from export.bundle import ExportSettings, calibration_texts_of, export_bundle
    from runtime import Classifier
    from runtime.bundle import LAYOUT

    from compressor.rundir import load_labels

    bundle = student_dir.parent / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    settings = ExportSettings(golden_size=20)
    arguments = dict(labels=load_labels(run_dir), calibration_texts=calibration_texts_of(run_dir, settings.calibration_size),
                     test_texts=test_texts, test_labels=list(test_y))
    note = None
    try:
        manifest = export_bundle(student_dir, bundle, settings=settings, **arguments)
    except GendistillError as exc:
        # The export refuses an int8 model that disagrees with fp32 too often; measure the fp32 bundle then.
        note = f"int8 export refused ({exc}); fp32 bundle measured instead"
        log.warning("%s: %s", student_dir.parent.name, note)
        settings = replace(settings, quantize="none")
        manifest = export_bundle(student_dir, bundle, settings=settings, **arguments)
    classifier = Classifier.load(bundle, threads=1)
    latency = _median_ms(lambda t: classifier.predict_proba([t]), latency_texts)
    metrics = manifest["metrics"]
    precision = manifest["model"]["precision"]
    return {"precision": precision, "export_note": note, "int8_accuracy": metrics["int8_test_accuracy"], "latency_ms": latency,
            "bytes": _files_bytes([bundle / LAYOUT.model, bundle / LAYOUT.tokenizer]),
            "onnx_batch1_ms": metrics["latency_ms"][f"{precision}_batch1"]}


# --- one seed --------------------------------------------------------------------------------------


def _student_plan(bench: BenchmarkSettings, distill) -> list[dict]:
    """Every student to train for one seed: name, DistillSettings, transfer, count, and the row/curve/ablation it feeds."""
    top = max(bench.synthetic_counts)
    plan = [
        {"name": "student-labeled-only", "settings": distill, "transfer": "none", "count": None, "labeled_only": True},
        {"name": "student-kd", "settings": distill, "transfer": "none", "count": None},
        {"name": "student-gendist", "settings": distill, "transfer": "synthetic", "count": top},
        {"name": "student-gendist-hard", "settings": replace(distill, labels="hard"), "transfer": "synthetic", "count": top},
        {"name": "student-oracle-unlabeled", "settings": distill, "transfer": "unlabeled", "count": top},
    ]
    for count in bench.synthetic_counts:
        if 0 < count < top:
            plan.append({"name": f"curve-synthetic-{count}", "settings": distill, "transfer": "synthetic", "count": count})
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
    from compressor.pipeline import run_compress
    from compressor.rundir import load_labels, load_split, read_json, stage_path

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
    teacher_id = read_json(stage_path(run_dir, "teacher") / "metrics.json")["stage_id"]
    row("teacher", {"model": "teacher", "teacher": teacher_id, "latency_texts": bench.latency_texts},
        lambda: teacher_row(run_dir, test_y, k, latency_texts, settings.teacher.max_length))

    annotate_id = read_json(stage_path(run_dir, "annotate") / "metrics.json")["stage_id"]
    distill_id = read_json(stage_path(run_dir, "distill") / "metrics.json")["stage_id"]
    exported = set(MODELS) | {f"ablation-architecture-{a}" for a in bench.architectures}
    for item in _student_plan(bench, settings.distill):
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
            else:
                student_dir = train_student_row(run_dir, item["settings"], data, work, desc=f"{name} seed {seed}",
                                                labeled_only=item.get("labeled_only", False))
            result = measure_student(run_dir, student_dir, test_texts, test_y, k, export, latency_texts)
            result["transfer_texts"] = len(data["texts"]) - len(train_texts)
            return result

        if name == "student-gendist":
            row_settings["distill_stage"] = distill_id
        row(name, row_settings, make)

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
        "settings": _jsonable({stage: settings.of(stage) for stage in settings.stages()}),
    }


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
        "per_seed": {str(seed): {k: v for k, v in s.items() if k != "settings"} for seed, s in seeds.items()},
        "pipeline_settings": first["settings"],
    }


def _environment() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _seed_cost(seed_result: dict) -> float:
    """Compute seconds one seed took when it was made (shared stages + rows), even if now read from cache."""
    return seed_result["shared_stage_seconds"].get("total", 0.0) + sum(r.get("seconds", 0.0) for r in seed_result["rows"].values())


def run_benchmark(bench: BenchmarkSettings, out_dir: str | Path, runs_dir: str | Path | None = None, command: str | None = None) -> dict:
    """Run (or resume) the whole benchmark; writes results.json, RESULTS.md and the plots into `out_dir`.

    Seeds run in the outer loop (seed 0 of every dataset first), and the outputs are rewritten after
    each finished seed, so a run stopped early, or by `time_budget_minutes`, still leaves complete
    results for the seeds it finished (results.json lists them per dataset).
    """
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else out_dir / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    done: dict[str, dict[int, dict]] = {_dataset_slug(d): {} for d in bench.datasets}
    skipped = []
    results = {}
    for seed in bench.seeds:
        for dataset in bench.datasets:
            slug = _dataset_slug(dataset)
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
            results = {
                "schema_version": 1,
                "command": command,
                "benchmark_settings": _jsonable(asdict(bench)),
                "environment": _environment(),
                "wall_seconds": time.time() - started,
                "skipped_for_time_budget": skipped,
                "datasets": {name: aggregate(bench, seeds) for name, seeds in done.items() if seeds},
            }
            write_outputs(results, out_dir)
    if not results:
        raise GendistillError("The time budget allowed no seed at all; raise --time-budget-min.")
    results["skipped_for_time_budget"] = skipped
    write_outputs(results, out_dir)
    return results


def _dataset_slug(dataset: str) -> str:
    return Path(dataset).stem if Path(dataset).suffix else Path(dataset).name


# --- outputs ---------------------------------------------------------------------------------------


def check_results(results: dict) -> None:
    """Raise ValueError unless `results` has the documented shape (the schema tests and consumers rely on)."""
    if not isinstance(results.get("datasets"), dict) or not results["datasets"]:
        raise ValueError("results.datasets must be a non-empty object")
    for name, dataset in results["datasets"].items():
        if not isinstance(dataset.get("seeds"), list) or not dataset["seeds"]:
            raise ValueError(f"{name}: seeds must be a non-empty list")
        if not isinstance(dataset.get("per_class"), int):
            raise ValueError(f"{name}: per_class must be an integer")
        models = [row.get("model") for row in dataset.get("rows", [])]
        if sorted(models) != sorted(MODELS):
            raise ValueError(f"{name}: rows must be exactly {MODELS}, got {models}")
        for row in dataset["rows"]:
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise ValueError(f"{name}/{row['model']}: missing {missing}")
            for key in ("accuracy_mean", "macro_f1_mean"):
                if not isinstance(row[key], float) or not 0.0 <= row[key] <= 1.0:
                    raise ValueError(f"{name}/{row['model']}: {key} must be a fraction, got {row[key]!r}")
            if not isinstance(row["accuracy_std"], float) or row["accuracy_std"] < 0:
                raise ValueError(f"{name}/{row['model']}: accuracy_std must be a non-negative number")
            if not isinstance(row["params"], int) or row["params"] <= 0:
                raise ValueError(f"{name}/{row['model']}: params must be a positive integer")
            for key in ("bytes", "latency_ms"):
                if row[key] is not None and not (isinstance(row[key], (int, float)) and row[key] > 0):
                    raise ValueError(f"{name}/{row['model']}: {key} must be positive or null")


def write_outputs(results: dict, out_dir: Path) -> None:
    check_results(results)
    write_json_atomic(out_dir / "results.json", results)
    plots = write_plots(results, out_dir)
    markdown = render_markdown(results, plots)
    write_text_atomic(out_dir / "RESULTS.md", markdown)


def write_plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, dataset in results["datasets"].items():
        rows = {r["model"]: r for r in dataset["rows"]}
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for transfer, label, color in (("synthetic", "generation-distillation (synthetic texts)", "tab:blue"),
                                       ("unlabeled", "oracle (real unlabeled texts)", "tab:green")):
            points = [p for p in dataset["synthetic_curve"] if p["transfer"] == transfer]
            if points:
                ax.errorbar([p["count"] for p in points], [p["accuracy_mean"] for p in points],
                            yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=label, color=color)
        for model, style in (("teacher", "k--"), ("tfidf-svm", "r:"), ("fasttext", "m-."), ("student-labeled-only", "c:")):
            ax.axhline(rows[model]["accuracy_mean"], linestyle=style[1:], color=style[0], linewidth=1, label=model)
        ax.set_xlabel("transfer texts (0 = plain KD on the labeled data)")
        ax.set_ylabel("test accuracy")
        seeds = len(dataset["seeds"])
        ax.set_title(f"{name}: student accuracy vs transfer texts\n({dataset['per_class']}/class, {seeds} seed{'s' if seeds > 1 else ''}"
                     f"{', error bars: std over seeds' if seeds > 1 else ''})", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        written.append(_save(fig, ax, out_dir / f"{name}-synthetic-curve.png"))

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, row in enumerate(dataset["rows"]):
            if row["latency_ms"] is None:
                continue
            size = max(row["bytes"] or 1, 1)
            ax.scatter(row["latency_ms"], row["accuracy_mean"], s=20 + 40 * max(np.log10(size) - 3, 0), alpha=0.6,
                       marker="os^Dv<>p"[i % 8], label=f"{row['model']} ({_size(size)})")
        # A legend, not labels by the points: the students sit on top of each other.
        ax.legend(fontsize=6, loc="best", markerscale=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("batch-1 latency, ms (1 CPU thread, log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{name}: accuracy vs batch-1 latency\n(marker area grows with log size on disk)", fontsize=10)
        written.append(_save(fig, ax, out_dir / f"{name}-accuracy-latency.png"))
    return written


def _save(fig, ax, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _pct(x, std=None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _ms(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.1f}")


def _standard_error(accuracy: float, n) -> float:
    return float(np.sqrt(accuracy * (1 - accuracy) / max(int(n or 1), 1)))


def headline(dataset: dict) -> dict:
    """The papers' comparisons for one dataset, in accuracy points and ratios."""
    rows = {r["model"]: r for r in dataset["rows"]}
    student = rows["student-gendist"]["accuracy_mean"]
    return {
        "student_vs_teacher": student / max(rows["teacher"]["accuracy_mean"], 1e-9),
        "minus_tfidf_svm": student - rows["tfidf-svm"]["accuracy_mean"],
        "minus_fasttext": student - rows["fasttext"]["accuracy_mean"],
        "minus_labeled_only": student - rows["student-labeled-only"]["accuracy_mean"],
        "minus_kd": student - rows["student-kd"]["accuracy_mean"],
        "soft_minus_hard": student - rows["student-gendist-hard"]["accuracy_mean"],
        "oracle_minus_synthetic": rows["student-oracle-unlabeled"]["accuracy_mean"] - student,
        "teacher_minus_student": rows["teacher"]["accuracy_mean"] - student,
    }


def render_markdown(results: dict, plots: list[str]) -> str:
    lines = ["# Benchmark results", ""]
    if results.get("command"):
        lines += ["Made by:", "", "```", results["command"], "```", ""]
    env = results.get("environment", {})
    compute = sum(s.get("compute_seconds", 0) for d in results["datasets"].values() for s in d.get("per_seed", {}).values())
    lines += [f"Machine: {env.get('cpu_count')} CPU cores ({env.get('machine')}), torch {env.get('torch')}, {env.get('date')}; "
              f"compute {compute / 60:.0f} min in all (this invocation {results.get('wall_seconds', 0) / 60:.0f} min; "
              "the rest reused from the runs dir). Accuracy and macro-F1 in % on the test split, "
              "mean ± sample std over seeds (each seed: its own split, teacher, generator, synthetic texts and students). "
              "Latency: median batch-1 wall time per text, raw string in, 1 CPU thread, each model in its own runtime "
              "(students: int8 ONNX via runtime.Classifier). Size: files needed to predict.", ""]
    if results.get("skipped_for_time_budget"):
        skipped = ", ".join(f"{s['dataset']} seed {s['seed']}" for s in results["skipped_for_time_budget"])
        lines += [f"Not run, to stay within the time budget of {results['benchmark_settings'].get('time_budget_minutes')} min: {skipped}.", ""]
    for name, dataset in results["datasets"].items():
        h = headline(dataset)
        splits = dataset["splits"]
        several = len(dataset["seeds"]) > 1  # one seed has no spread to show
        rows_by_model = {r["model"]: r for r in dataset["rows"]}

        def sd(std):
            return std if several else None

        lines += [f"## {name}", "",
                  f"{dataset['per_class']} labeled examples per class (train {splits.get('train')}), dev {splits.get('dev')}, "
                  f"test {splits.get('test')}; seeds {', '.join(map(str, dataset['seeds']))}"
                  + ("." if several else f" (one seed, so no spread over seeds; the test set alone gives a standard error of about "
                                         f"{100 * _standard_error(rows_by_model['student-gendist']['accuracy_mean'], splits.get('test')):.1f} "
                                         "points on the student's accuracy)."), "",
                  "| model | accuracy | macro-F1 | params | size | latency ms |", "|---|---|---|---|---|---|"]
        for row in dataset["rows"]:
            latency = _ms(row["latency_ms"]) + (" (fp32 export)" if "fp32" in row.get("precision", "") else "")
            lines.append(f"| {row['model']} | {_pct(row['accuracy_mean'], sd(row['accuracy_std']))} | {_pct(row['macro_f1_mean'])} | "
                         f"{row['params']:,} | {_size(row['bytes'])} | {latency} |")
        int8 = {r["model"]: r.get("int8_accuracy") for r in dataset["rows"] if r.get("int8_accuracy") is not None}
        if int8:
            lines += ["", "Student accuracy after int8 export: " + ", ".join(f"{m} {_pct(a)}" for m, a in int8.items()) + "."]
        def points(x):
            return f"{100 * x:+.1f}"

        lines += ["", f"The generation-distillation student keeps **{100 * h['student_vs_teacher']:.1f}%** of the teacher's accuracy "
                  f"({100 * h['teacher_minus_student']:.1f} points below it). Student-gendist minus: TF-IDF+SVM {points(h['minus_tfidf_svm'])}, "
                  f"fastText {points(h['minus_fasttext'])}, labeled-only student {points(h['minus_labeled_only'])}, "
                  f"plain KD {points(h['minus_kd'])}, hard labels {points(h['soft_minus_hard'])}, "
                  f"oracle on real unlabeled texts {points(-h['oracle_minus_synthetic'])} (points of accuracy).", ""]
        lines += ["### Accuracy vs number of transfer texts (paper's Figure 2)", "", "| texts | synthetic | real unlabeled (oracle) |", "|---|---|---|"]
        by_count: dict[int, dict] = {}
        for point in dataset["synthetic_curve"]:
            by_count.setdefault(point["count"], {})[point["transfer"]] = point
        for count, points in sorted(by_count.items()):
            cells = [_pct(points[t]["accuracy_mean"], sd(points[t]["accuracy_std"])) if t in points else "-" for t in ("synthetic", "unlabeled")]
            lines.append(f"| {count} | {cells[0]} | {cells[1]} |")
        if dataset["ablations"]:
            lines += ["", "### Ablations (generation-distillation student, one setting changed)", "",
                      "| ablation | value | accuracy | macro-F1 | params | latency ms |", "|---|---|---|---|---|---|"]
            for a in dataset["ablations"]:
                value = f"{a['value']} (default)" if a["default"] else str(a["value"])
                lines.append(f"| {a['ablation']} | {value} | {_pct(a['accuracy_mean'], sd(a['accuracy_std']))} | {_pct(a['macro_f1_mean'])} | "
                             f"{a['params']:,} | {_ms(a['latency_ms'])} |")
        per_seed = dataset["per_seed"]
        seconds = [s.get("wall_seconds", 0) for s in per_seed.values()]
        first = next(iter(per_seed.values()))
        gen = first.get("generator") or {}
        teacher_dev = ", ".join(f"{100 * s['teacher_dev_accuracy']:.1f}" for s in per_seed.values())
        confidence = ", ".join(f"{s['synthetic_mean_max_probability']:.2f}" for s in per_seed.values()
                               if s.get("synthetic_mean_max_probability") is not None)
        perplexity = (f"Generator dev perplexity (seed {dataset['seeds'][0]}): {gen.get('dev_perplexity_before', 0):.0f} -> "
                      f"{gen.get('dev_perplexity_after', 0):.0f}. ") if gen else ""
        lines += ["", f"Seconds per seed (shared stages + every row): {', '.join(f'{s:.0f}' for s in seconds)}. "
                  f"Teacher dev accuracy per seed: {teacher_dev}. {perplexity}"
                  f"Teacher mean max-probability on synthetic texts per seed: {confidence}.", ""]
        for plot in plots:
            if plot.startswith(f"{name}-"):
                lines.append(f"![{plot}]({plot})")
        lines.append("")
    return "\n".join(lines)
