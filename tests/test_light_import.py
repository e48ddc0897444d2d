"""`import runtime` is the core install's promise: no torch, transformers, onnx or click, checked in a
fresh interpreter (as tiktoken does), because this test process has imported them all already."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "onnx", "click")


def modules_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_import_runtime_is_light():
    loaded = modules_after("import runtime\nruntime.Classifier\nfrom runtime import Classifier, GendistillError")
    assert [name for name in HEAVY if name in loaded] == []
    # onnxruntime and sentencepiece wait until a bundle is loaded, so importing stays fast.
    assert "onnxruntime" not in loaded and "sentencepiece" not in loaded


def test_loading_and_predicting_stays_light(bundle):
    loaded = modules_after(f"import runtime\nruntime.Classifier.load({str(bundle)!r}).predict(['goal', 'shares'])")
    assert [name for name in HEAVY if name in loaded] == []
