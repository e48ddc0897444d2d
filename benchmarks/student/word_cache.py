"""Batch-1 latency of students with and without the runtime's word cache, side by side in one process.

    python benchmarks/student/word_cache.py OUT.json RUN_DIR:STUDENT_DIR[:OLD_BUNDLE] [...]

Each student is exported afresh by today's code (int8 as the pipeline would, in a child process, so this one
imports only the runtime, as a deployment would). Then the first 100 test texts of RUN_DIR are timed as
`measure.median_ms` times every benchmark row (median of the fastest of 5 passes, `predict_proba([text])`,
1 onnxruntime thread), three ways:
- whole:  sentencepiece over each whole text (the runtime before the word cache);
- seen:   the word cache of a runtime that has read RUN_DIR's labeled training texts, reset before every pass so the
          test texts' new words are new each time (what the benchmark's student rows report);
- warm:   the cache after the test texts themselves (a runtime that has seen every word before);
- cold:   the cache emptied right before each text (inside the timed call: emptying one text's words takes a few
          microseconds), so every word is new;
and, given OLD_BUNDLE (the same student exported by earlier code), that bundle read the `whole` way.
Three alternations of all ways, so the machine's state at any one moment weighs on all alike.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gendistill.compressor.benchmark.measure import median_ms, remember_only
from gendistill.compressor.rundir import load_split
from gendistill.runtime import Classifier


def export(run_dir: str, student_dir: str, out: str) -> None:
    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    run_export(ExportSettings(golden_size=20), run_dir, out, student_dir=Path(student_dir))


def time_ways(bundle: Path, old_bundle: str | None, texts: list[str], seen: list[str]) -> dict:
    classifier = Classifier.load(bundle, threads=1)
    old = Classifier.load(old_bundle, threads=1) if old_bundle else None
    inputs = classifier.inputs
    reset = remember_only(classifier, seen)
    seen_words = len(inputs.word_ids)
    rows = {"whole": [], "seen": [], "warm": [], "cold": []} | ({"old bundle, whole": []} if old else {})

    def cold(text):
        inputs.word_ids.clear()
        classifier.predict_proba([text])

    for _ in range(3):
        inputs.by_word = False
        rows["whole"].append(median_ms(lambda text: classifier.predict_proba([text]), texts))
        inputs.by_word = True
        rows["seen"].append(median_ms(lambda text: classifier.predict_proba([text]), texts, before_round=reset))
        rows["warm"].append(median_ms(lambda text: classifier.predict_proba([text]), texts))
        rows["cold"].append(median_ms(cold, texts))
        if old:
            old.inputs.by_word = False
            rows["old bundle, whole"].append(median_ms(lambda text: old.predict_proba([text]), texts))
    graphs = {"today": bundle} | ({"old bundle": Path(old_bundle)} if old else {})
    return {"seen_words": seen_words, "ids": [len(inputs.encode_one(text)) for text in texts], "ms": rows,
            "onnx_graph": {name: {"operations": operations(path / "model.onnx"),
                                  "batch1_ms_at_export": json.loads((path / "metrics.json").read_text())["latency_ms"]}
                           for name, path in graphs.items()}}


def operations(model: Path) -> int:
    import onnx

    return len(onnx.load(str(model)).graph.node)


def main():
    if sys.argv[1] == "export":  # the child process: export RUN_DIR STUDENT_DIR OUT
        export(*sys.argv[2:5])
        return
    out, *specs = sys.argv[1:]
    results = {"method": __doc__.split("\n\n", 2)[2].strip(), "students": {}}
    for spec in specs:
        run_dir, student_dir, *old_bundle = spec.split(":")
        texts = load_split(run_dir, "test")[0][:100]
        seen = load_split(run_dir, "train")[0]
        with tempfile.TemporaryDirectory() as work:
            bundle = Path(work) / "bundle"
            subprocess.run([sys.executable, __file__, "export", run_dir, student_dir, str(bundle)], check=True)
            timed = time_ways(bundle, old_bundle[0] if old_bundle else None, texts, seen)
        median = {way: statistics.median(values) for way, values in timed["ms"].items()}
        results["students"][student_dir] = {
            "texts": len(texts), "mean_chars": statistics.mean(map(len, texts)), "mean_ids": statistics.mean(timed["ids"]),
            "seen_texts": len(seen), "seen_words": timed["seen_words"], "onnx_graph": timed["onnx_graph"],
            "ms": timed["ms"], "median_ms": median,
        }
        print(f"{student_dir}: {statistics.mean(map(len, texts)):.0f} chars, {statistics.mean(timed['ids']):.0f} ids; "
              + ", ".join(f"{way} {value:.3f} ms" for way, value in median.items()), flush=True)
        Path(out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
