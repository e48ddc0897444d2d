"""The Python API of the pipeline; the `compress`, `demo` and `export` commands are thin wrappers over it.

    from gendistill import compress, export_run
    report = compress("reviews.csv", "runs/reviews", per_class=100)
    export_run("runs/reviews", "my-bundle", quantize="none")
"""

from __future__ import annotations

from pathlib import Path

from gendistill.runtime.errors import require_extra

DEMO = {"data": "rotten-tomatoes", "per_class": 100, "synthetic": 10_000}
"""The embedded default `gendistill demo` runs: Rotten Tomatoes, 100 labeled examples per class, and every
other setting at its default (packaged teacher and generator), except 10,000 synthetic texts instead of 20,000:
on 2 cores sampling and annotating the other 10,000 would add about 10 minutes to a demo meant to take 20."""


def compress(data: str, out: str | Path, *, from_stage: str | None = None, force: bool = False, redo_changed: bool = False,
             **settings) -> dict:
    """Run (or resume) the pipeline on DATA into the run directory `out`; returns the report.

    `settings` are the options of `gendistill compress` by their Python names (`per_class`, `lam`, ...),
    and `no_export=True` stops after evaluation. `from_stage` re-makes that stage and those built on it;
    `redo_changed` re-makes stages asked for with other settings instead of refusing (a cache of runs).
    """
    require_extra("torch", "transformers", "onnx")
    import transformers

    from gendistill.compressor.pipeline import build_settings, run_compress

    # Our own bars show stage progress; transformers' per-file load/save bars would only add noise.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()  # e.g. the "classifier.weight MISSING" report a new head always gets
    return run_compress(build_settings(data, **settings), out, from_stage=from_stage, force=force, redo_changed=redo_changed)


def export_run(run_dir: str | Path, out: str | Path, **settings) -> dict:
    """Export the student of the finished run RUN_DIR to a verified bundle at `out` (new or empty);
    returns its bundle.json. `settings` are `gendistill export`'s options (`quantize`, `mobile`, ...)."""
    require_extra("torch", "onnx")
    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime import settings as settings_module
    from gendistill.runtime.bundle import load_manifest
    from gendistill.runtime.errors import GendistillError

    unknown = sorted(set(settings) - settings_module.api_names([ExportSettings]))
    if unknown:
        raise GendistillError(f"Unknown export setting {', '.join(unknown)}; `gendistill export --help` lists them.")
    run_export(settings_module.build(ExportSettings, settings), run_dir, out)
    return load_manifest(out, verify=True)
