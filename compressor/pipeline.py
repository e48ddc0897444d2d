"""`run_compress`: the whole pipeline, stage by stage, resumable.

Each stage is `run_<stage>(settings, run_dir)`. A finished stage is skipped on re-run when its saved
settings equal the requested ones and the stages it was built on (`rundir.INPUTS`) are unchanged. Asking
for different settings of a finished stage is refused (that would silently mix two runs) unless the user
says `--from STAGE` (that stage and those built on it) or `--force`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gendistill.compressor.annotate import AnnotateSettings, run_annotate
from gendistill.compressor.assets import check_available
from gendistill.compressor.data import DataSettings, fingerprint, run_data
from gendistill.compressor.distill import DistillSettings, run_distill
from gendistill.compressor.evaluate import EvaluateSettings, run_evaluate, write_report
from gendistill.compressor.export_stage import run_export
from gendistill.compressor.generator import GeneratorSettings, run_generator
from gendistill.compressor.rundir import (STAGES, depends_on, is_complete, is_stale, kill_point, partial_path, read_json, recover_run,
                                         remove_dir, stage_path)
from gendistill.compressor.synthesize import SynthesizeSettings, run_synthesize
from gendistill.compressor.teacher import TeacherSettings, run_teacher
from gendistill.export.bundle import ExportSettings
from gendistill.runtime import settings as settings_module
from gendistill.runtime.bundle import write_json_atomic
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)
RUN_FILE = "run.json"


@dataclass(frozen=True)
class CompressSettings:
    """Every stage's settings: what `gendistill compress` and `compress()` run with."""

    data: DataSettings = field(default_factory=DataSettings)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    synthesize: SynthesizeSettings = field(default_factory=SynthesizeSettings)
    annotate: AnnotateSettings = field(default_factory=AnnotateSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    export: ExportSettings | None = field(default_factory=ExportSettings)
    """None stops after evaluation (no bundle)."""

    def stages(self) -> list[str]:
        skip = set()
        if self.synthesize.count == 0:
            skip.add("generator")
        if self.export is None:
            skip.add("export")
        return [s for s in STAGES if s not in skip]

    def of(self, stage: str) -> dict:
        settings = asdict(getattr(self, stage))
        if stage == "data":
            settings["fingerprint"] = fingerprint(self.data)
        return json.loads(json.dumps(settings))


STAGE_SETTINGS = {"data": DataSettings, "teacher": TeacherSettings, "generator": GeneratorSettings, "synthesize": SynthesizeSettings,
                  "annotate": AnnotateSettings, "distill": DistillSettings, "evaluate": EvaluateSettings, "export": ExportSettings}
"""stage -> its settings class: the one list the options of `compress`, `demo` and `benchmark` are made from."""


def build_settings(data: str, *, no_export: bool = False, **values) -> CompressSettings:
    """CompressSettings from option values by their API names (`per_class`, `teacher_epochs`, `lam`, ...);
    what is not given keeps its default. Unknown names and bad values are refused in one sentence."""
    known = settings_module.api_names(STAGE_SETTINGS.values())
    unknown = sorted(set(values) - known)
    if unknown:
        raise GendistillError(f"Unknown setting {', '.join(unknown)}; `gendistill compress --help` lists the settings (by their Python names).")
    stages = {stage: settings_module.build(cls, values) for stage, cls in STAGE_SETTINGS.items() if stage not in ("data", "export")}
    return CompressSettings(data=settings_module.build(DataSettings, values, source=data),
                            export=None if no_export else settings_module.build(ExportSettings, values), **stages)


RUNNERS = {
    "data": run_data, "teacher": run_teacher, "generator": run_generator, "synthesize": run_synthesize,
    "annotate": run_annotate, "distill": run_distill, "evaluate": run_evaluate, "export": run_export,
}


def _check_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise GendistillError(f"--out {run_dir} is a file; give a directory for the run.")
    # A run killed while writing its run.json leaves only that write's temporary file.
    if run_dir.is_dir() and not (run_dir / RUN_FILE).is_file() and any(not p.name.startswith(f".{RUN_FILE}.") for p in run_dir.iterdir()):
        raise GendistillError(f"--out {run_dir} already holds files that are not a gendistill run; choose a new or empty directory.")


EXECUTION_ONLY = {"upstream", "device", "precision"}
"""Recorded in settings.json, but a stage made on a GPU is reused on a CPU and the other way round, and one
trained in bfloat16 is reused for fp32 (measured to make the same teacher; TeacherSettings.precision)."""


ADDED_LATER = {"prefix_share": 0.0, "keep_confident": 0, "keep_share": 0.0, "epoch_examples": 1, "conditional": False, "prior": "train",
               "gru_units": 64, "labeled_only_student": "same", "labeled_only_embeddings": "same", "logit_adjustment": False, "select_by": "accuracy",
               "teacher_labels": "soft", "vocabulary": "trained"}
"""Settings a stage gained after runs were made, with the value that does what those runs did: a settings.json
without the key is read as this value, so an upgrade does not refuse (or re-make) stages it would make the same."""


REMOVED = {"transfer_mix": "as-sampled", "embedding_lr": 1.0, "unlabeled_texts": 0, "token_dropout": 0.0, "gru_pooling": "max",
           "gru_layers": 1, "real_repeat": 1}
"""Settings a stage had and lost (probes measured and taken out), with the value that does what the code does now: a
settings.json holding the key at this value is reused as if the key were absent; at another value it is re-made."""


AUTO = {"max_length": 0, "architecture": "auto", "embeddings": "auto", "keep_confident": None, "teacher_labels": "auto",
        "vocabulary": "auto"}
"""Settings whose value here means "chosen by the stage": a stage saves the value it chose, and any saved value
(or, for a stage made before the setting existed, its ADDED_LATER value) satisfies a request for the automatic choice."""


def settings_difference(saved: dict, wanted: dict, ignore=EXECUTION_ONLY) -> str | None:
    """The first setting (as "key: before -> after") in which a stage's saved settings differ from the wanted
    ones, or None when the stage can be reused; the `ignore` settings (execution-only: device, ...) never count.
    Nested settings (a benchmark row's, which hold stages' settings) are compared by the same rule."""
    for key in sorted(set(saved) | set(wanted)):
        if key in ignore or (key in AUTO and (key in saved or key in ADDED_LATER) and wanted.get(key) == AUTO[key]):
            continue  # a stage made before the setting existed did ADDED_LATER's value: one the automatic choice accepts
        if key not in wanted and key in REMOVED and saved[key] == REMOVED[key]:
            continue
        before = saved.get(key, ADDED_LATER.get(key))
        if isinstance(before, dict) and isinstance(wanted.get(key), dict):
            inner = settings_difference(before, wanted[key], ignore)
            if inner:
                return f"{key}.{inner}"
        elif before != wanted.get(key):
            return f"{key}: {before!r} -> {wanted.get(key)!r}"
    return None


def plan(settings: CompressSettings, run_dir: Path, from_stage: str | None, force: bool,
         redo_changed: bool = False) -> list[tuple[str, bool]]:
    """[(stage, reuse)] without touching anything; raises before any work if the request conflicts.

    With `redo_changed` a finished stage asked for with other settings is re-made (with what is built on it)
    instead of refused: for run directories that are a cache, like the benchmark's.
    """
    stages = settings.stages()
    if from_stage is not None and from_stage not in stages:
        raise GendistillError(f"--from must be one of {', '.join(stages)}, not {from_stage!r}.")
    out, remade = [], set()
    for stage in stages:
        inputs = depends_on(stage)
        if force or stage == from_stage or not is_complete(run_dir, stage) or remade.intersection(inputs):
            out.append((stage, False))
            remade.add(stage)  # so is every stage built on it
            continue
        saved = read_json(stage_path(run_dir, stage) / "settings.json")
        wanted = settings.of(stage)
        difference = settings_difference(saved or {}, wanted)
        if difference is None and redo_changed and stage == "distill":
            difference = _auto_choices_difference(settings, run_dir, saved or {})
        if difference and redo_changed:
            log.info("%-10s made with other settings (%s): re-made", stage, difference)
            out.append((stage, False))
            remade.add(stage)
            continue
        if difference:
            raise GendistillError(
                f"{run_dir} holds a run whose {stage} stage was made with other settings ({difference}); "
                f"use a new --out, or --from {stage} to redo it and what follows, or --force."
            )
        if is_stale(run_dir, stage):  # an earlier re-run was cut off after re-making its inputs
            out.append((stage, False))
            remade.add(stage)
            continue
        out.append((stage, True))
    return out


def _auto_choices_difference(settings: CompressSettings, run_dir: Path, saved: dict) -> str | None:
    """For a cache of today's defaults: a finished student whose automatic choices today's rules make otherwise."""
    from gendistill.compressor.distill import auto_choices_difference
    from gendistill.compressor.teacher import teacher_max_length

    return auto_choices_difference(saved, settings.distill, teacher_max_length(run_dir))


def run_compress(settings: CompressSettings, run_dir: str | Path, from_stage: str | None = None, force: bool = False,
                 redo_changed: bool = False) -> dict:
    """Run (or resume) every stage into `run_dir`; returns the report (also written as report.json/.md)."""
    run_dir = Path(run_dir)
    _check_run_dir(run_dir)
    recover_run(run_dir)  # a run killed inside a stage's move into place: finish or undo that move first
    steps = plan(settings, run_dir, from_stage, force, redo_changed)
    to_run = {stage for stage, reuse in steps if not reuse}
    if "teacher" in to_run:
        check_available(settings.teacher.finetuned or settings.teacher.model, "teacher")
    if "generator" in to_run:
        check_available(settings.generator.model, "generator")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RUN_FILE).is_file():  # marks the directory as a gendistill run (see _check_run_dir)
        write_json_atomic(run_dir / RUN_FILE, {"created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    for stage, reuse in steps:
        if reuse:
            log.info("%-10s done already, skipped", stage)
            if partial_path(run_dir, stage).exists():  # left by a re-make of this stage that was killed
                remove_dir(partial_path(run_dir, stage))
            continue
        kill_point(f"{stage}:start")
        log.info("%-10s running", stage)
        started = time.time()
        RUNNERS[stage](getattr(settings, stage), run_dir)
        log.info("%-10s finished in %.1f s", stage, time.time() - started)
        if stage == "evaluate":
            write_report(run_dir)
    return write_report(run_dir)
