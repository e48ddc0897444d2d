"""Stage `export`: bundle the run's distilled student (gendistill.export does the exporting and checking).

Calibrates int8 on real texts from data/train.jsonl (topped up from dev and unlabeled when train is
short), checks its agreement with fp32 on up to CHECK_TEXTS other texts of the run (dev, test,
unlabeled and synthetic) and the accuracies on data/test.jsonl. The bundle is built in `<dir>.partial/`
and renamed into place only after every check passed, like every stage: a failed or killed export
leaves the previous bundle (if any) intact. `gendistill export RUN_DIR --out DIR` is the same stage
written to another directory.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from gendistill.compressor import rundir
from gendistill.export.bundle import ExportSettings, export_bundle
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

CHECK_TEXTS = 5000
"""At most this many texts for int8's agreement with fp32: enough to show a disagreement rate of 0.7% to
be under 1% (export.verify), and quick: for a 100-filter Kim-CNN on rotten-tomatoes texts (2 cores),
1 s to encode them and run fp32, then 0.3 s to quantize and 0.3 s to check per recipe."""


def shipped_student(run_dir: str | Path) -> Path:
    """The student the distill stage chose to ship: the generation-distillation one, unless dev showed the
    labeled-only one better (see the distill stage's `shipped` and `ships_labeled_only`)."""
    distill = rundir.stage_path(run_dir, "distill")
    metrics = rundir.read_json(distill / "metrics.json") if (distill / "metrics.json").is_file() else {}
    return distill / ("labeled_only" if metrics.get("shipped") == "labeled-only" else "student")


def run_export(settings: ExportSettings, run_dir: str | Path, out: str | Path | None = None, *, student_dir: Path | None = None) -> dict:
    """Export RUN_DIR's student to RUN_DIR/bundle, or to `out` (which must not exist or be empty, or hold
    this very export already: then nothing is done).

    `student_dir` exports another student trained on the run (the benchmark's rows) instead of the
    distill stage's. Returns the stage's metrics (the bundle's check figures).
    """
    from gendistill.compressor.student import load_student

    started = time.time()
    run_dir = Path(run_dir)
    if not rundir.is_complete(run_dir, "distill"):
        raise GendistillError(
            f"{run_dir} has no finished student ({rundir.stage_path(run_dir, 'distill') / 'metrics.json'} is missing); "
            "run `gendistill compress` into it first."
        )
    final = None if out is None else Path(out)
    if final is not None:
        if final.exists() and not final.is_dir():
            raise GendistillError(f"{final} is a file, not a directory; pass a new folder with --out.")
        finished = rundir.partial_path(run_dir, "export", final)
        if student_dir is None and not (final.is_dir() and any(final.iterdir())) and _same_export(run_dir, finished, settings):
            rundir.replace_dir(finished, final)  # this export, killed just before its rename: finish the move
        if student_dir is None and _same_export(run_dir, final, settings):
            log.info("%s already holds this run's student exported with these settings.", final)
            return rundir.read_json(final / "metrics.json")
        if final.is_dir() and any(final.iterdir()):
            raise GendistillError(f"{final} already exists and is not empty; pass a new folder with --out or delete it first.")
    student_dir = shipped_student(run_dir) if student_dir is None else Path(student_dir)
    for name in ("student.json", "student.safetensors", "tokenizer.model"):
        if not (student_dir / name).is_file():
            raise GendistillError(f"{student_dir} has no {name}, so it is not a trained student; run `gendistill compress` first.")
    model, config = load_student(student_dir)
    labels = rundir.load_labels(run_dir)
    if config.num_labels != len(labels):
        raise GendistillError(f"The student has {config.num_labels} outputs but the run has {len(labels)} labels; re-run distillation.")
    test_texts, test_labels = rundir.load_split(run_dir, "test")
    calibration_texts = calibration_texts_of(run_dir, settings.calibration_size)
    partial = rundir.begin_stage(run_dir, "export", final=final)
    try:
        manifest = export_bundle(
            model, config.input_spec, student_dir / "tokenizer.model", partial, architecture=config.architecture, labels=labels,
            calibration_texts=calibration_texts, check_texts=check_texts_of(run_dir, calibration_texts),
            test_texts=test_texts, test_labels=test_labels, settings=settings,
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    metrics = {**manifest["metrics"], "precision": manifest["model"]["precision"], "seconds": time.time() - started}
    rundir.finish_stage(run_dir, "export", asdict(settings), metrics, final=final)
    return metrics


def _same_export(run_dir: Path, bundle: Path, settings: ExportSettings) -> bool:
    """Whether `bundle` is a finished export of the run's current student with `settings`: the same command
    run again (say after a kill that came after the bundle's rename) then has nothing left to do."""
    if not (bundle / "metrics.json").is_file() or not (bundle / "settings.json").is_file():
        return False
    wanted = json.loads(json.dumps({**asdict(settings), "upstream": rundir.upstream_ids(run_dir, "export")}))
    return rundir.read_json(bundle / "settings.json") == wanted


def calibration_texts_of(run_dir: Path, size: int) -> list[str]:
    """`size` real texts, drawn reproducibly from train first, then dev and unlabeled if train is short."""
    texts: list[str] = []
    for split in ("train", "dev", "unlabeled"):
        if len(texts) >= size:
            break
        if (rundir.stage_path(run_dir, "data") / f"{split}.jsonl").is_file():
            split_texts = [t for t in rundir.load_split(run_dir, split)[0] if t.strip()]
            random.Random(0).shuffle(split_texts)
            texts += split_texts[: size - len(texts)]
    return texts


def check_texts_of(run_dir: Path, calibration_texts: list[str]) -> list[str]:
    """Up to CHECK_TEXTS distinct texts from dev, test, unlabeled and synthetic, drawn reproducibly.

    Calibration texts are left out: their activations set the int8 ranges, so no value of theirs is
    clipped and int8 would look better on them than on texts it has never seen.
    """
    texts = [t for split in ("dev", "test", "unlabeled") if (rundir.stage_path(run_dir, "data") / f"{split}.jsonl").is_file()
             for t in rundir.load_split(run_dir, split)[0]]
    synthetic = rundir.stage_path(run_dir, "synthesize") / "synthetic.jsonl"
    if synthetic.is_file():  # absent with --synthetic 0
        texts += [row["text"] for row in rundir.read_jsonl(synthetic)]
    calibration = set(calibration_texts)
    texts = [t for t in dict.fromkeys(texts) if t.strip() and t not in calibration]
    random.Random(0).shuffle(texts)
    return texts[:CHECK_TEXTS]
