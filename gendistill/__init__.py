"""gendistill: compress a text classifier into a tiny, fast student by generation-distillation.

The Python API mirrors the command line (each command is a thin wrapper over one of these):

    from gendistill import Classifier, compress, export_run

    report = compress("reviews.csv", "runs/reviews", per_class=100, student_epochs=20)   # gendistill compress
    export_run("runs/reviews", "my-bundle", quantize="none")                             # gendistill export
    Classifier.load("runs/reviews/bundle").predict("a gorgeous, witty, seductive movie") # gendistill predict

(`export_run`, not `export`: `gendistill.export` is the export package.)

Three layers, each importing only the ones below it:
    gendistill.runtime     (core install: numpy + onnxruntime + sentencepiece + click) bundles, Classifier, server, CLI
    gendistill.export      ONNX export, int8 quantization, checks, golden file
    gendistill.compressor  the pipeline (torch, transformers): data, teacher, generator, synthesize, annotate,
                           distill, evaluate, and the export stage; `pip install "gendistill[compress]"`.
Importing `gendistill` is cheap: `compress` and `export_run` import the pipeline only when called.
"""

from gendistill.runtime import Classifier, GendistillError

__version__ = "0.1.0"
__all__ = ["Classifier", "GendistillError", "compress", "export_run"]


def compress(data: str, out: str, *, from_stage: str | None = None, force: bool = False, **settings) -> dict:
    """Run (or resume) the whole pipeline on DATA into the run directory `out`; returns the report.

    `settings` are the options of `gendistill compress`, by their Python names (`per_class=100`,
    `teacher_epochs=10`, `lam=0.5`, ...); `gendistill compress --help` lists them with their defaults.
    """
    from gendistill.compressor.api import compress as run

    return run(data, out, from_stage=from_stage, force=force, **settings)


def export_run(run_dir: str, out: str, **settings) -> dict:
    """Export the student of a finished run to a verified bundle at `out`; returns its bundle.json.

    `settings` are the options of `gendistill export` (`quantize="none"`, `mobile=True`, ...).
    """
    from gendistill.compressor.api import export_run as run

    return run(run_dir, out, **settings)
