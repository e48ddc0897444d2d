"""The core install's promises, checked in fresh interpreters (as tiktoken does), because this test process
has imported everything already:
- `import gendistill` / `gendistill.runtime` never imports torch, transformers, onnx or click;
- `gendistill --help` and a pipeline command's `--help` never import torch;
- on a core install (torch, transformers and onnx not importable) `gendistill --help`, `predict`, `serve`
  and `bench` work, and the pipeline commands answer with one sentence that says what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "onnx", "click")
CORE_BLOCKED = ("torch", "transformers", "onnx", "onnxscript", "sklearn", "pandas")


def modules_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True, cwd=Path(__file__).parent)
    return json.loads(result.stdout.splitlines()[-1])


def test_import_runtime_is_light():
    loaded = modules_after("import gendistill.runtime\ngendistill.runtime.Classifier\nfrom gendistill import Classifier, GendistillError, compress, export_run")
    assert [name for name in HEAVY if name in loaded] == []
    # onnxruntime and sentencepiece wait until a bundle is loaded, so importing stays fast.
    assert "onnxruntime" not in loaded and "sentencepiece" not in loaded


def test_loading_and_predicting_stays_light(bundle):
    loaded = modules_after(f"import gendistill\ngendistill.Classifier.load({str(bundle)!r}).predict(['goal', 'shares'])")
    assert [name for name in HEAVY if name in loaded] == []


def test_top_level_names_are_not_taken():
    """The folders install as gendistill.*: nothing generic like `runtime` lands at the top of site-packages."""
    for name in ("runtime", "export", "compressor"):
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent)
        assert probe.returncode != 0 and "No module named" in probe.stderr, name


@pytest.mark.parametrize("argv", [["--help"], ["compress", "--help"], ["demo", "--help"], ["export", "--help"], ["benchmark", "--help"]])
def test_cli_help_does_not_import_torch(argv):
    code = f"import sys\nsys.argv = ['gendistill', *{argv!r}]\nfrom gendistill.runtime.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    loaded = modules_after(code)
    assert [name for name in ("torch", "transformers", "onnx") if name in loaded] == []


def core_install(tmp_path: Path) -> dict:
    """An environment in which the compress extra's modules cannot be imported, as on `pip install gendistill`."""
    site = tmp_path / "core-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nfor name in {CORE_BLOCKED!r}:\n    sys.modules[name] = None\n", encoding="utf-8")
    return {**os.environ, "PYTHONPATH": str(site)}


def gendistill(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gendistill.runtime.cli", *args], capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).parent)


def test_core_install_runs_the_runtime_commands(tmp_path, bundle):
    env = core_install(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert blocked.returncode != 0  # the simulation holds
    result = gendistill(env, "--help")
    assert result.returncode == 0 and "predict" in result.stdout and 'needs "gendistill[compress]"' in result.stdout
    result = gendistill(env, "predict", str(bundle), "a late goal by the striker")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[0] in ("sport", "business", "tech")
    result = gendistill(env, "bench", str(bundle), "--duration", "0.2", "--server-clients", "1")
    assert result.returncode == 0, result.stderr
    assert "req/s" in result.stdout


@pytest.mark.parametrize("command", [["compress", "data.csv", "--out", "run"], ["export", "run", "--out", "b"], ["demo"],
                                     ["benchmark", "--dataset", "rotten-tomatoes", "--out", "b"], ["compress", "--help"]])
def test_core_install_refuses_pipeline_commands_in_one_sentence(tmp_path, command):
    result = gendistill(core_install(tmp_path), *command)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install "gendistill[compress]"' in lines[0] and "Traceback" not in result.stderr


def test_layers_import_one_way():
    """runtime (core) <- export <- compressor: a lower layer never imports a higher one, not even lazily."""
    import ast

    root = Path(__file__).resolve().parent.parent
    higher = {"runtime": ("gendistill.export", "gendistill.compressor"), "export": ("gendistill.compressor",)}
    for layer, forbidden in higher.items():
        for path in (root / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not [n for n in names if n.startswith(forbidden)], f"{path.relative_to(root)} imports {names}"
