"""The annotate stage alone, timed on a copy of a finished run: its seconds, texts/s and engine check, appended as one
row to a JSON list. The copy hard-links every stage but annotate (copied, so nothing of the source is rewritten).

The code timed is whichever gendistill the interpreter imports, so two versions compare side by side by running this
with each clone's interpreter in turn (alternate them, A B B A: the machine's speed drifts within the hour):

    /tmp/old/.venv/bin/python benchmarks/teacher/annotate_stage.py runs/demo /tmp/ann-copy results.json before
    .venv/bin/python benchmarks/teacher/annotate_stage.py runs/demo /tmp/ann-copy results.json after

Heavy (3-4 minutes on 2 cores for the demo's 12,400 texts): run nothing else beside it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gendistill
from gendistill.compressor.annotate import AnnotateSettings, run_annotate

source, copy, out, label = sys.argv[1:5]
shutil.rmtree(copy, ignore_errors=True)
subprocess.run(["cp", "-al", source, copy], check=True)
shutil.rmtree(Path(copy) / "annotate")
subprocess.run(["cp", "-a", str(Path(source) / "annotate"), str(Path(copy) / "annotate")], check=True)
metrics = run_annotate(AnnotateSettings(), copy)
row = {"label": label, "code": str(Path(gendistill.__file__).parent),
       **{k: metrics.get(k) for k in ("seconds", "texts", "texts_per_second", "synthetic_texts_per_second", "engine",
                                      "teacher_dev_accuracy", "teacher_test_accuracy")},
       "engine_check_seconds": (metrics.get("engine_check") or {}).get("seconds")}
rows = json.loads(Path(out).read_text()) if Path(out).exists() else []
Path(out).write_text(json.dumps(rows + [row], indent=1))
print(json.dumps(row))
