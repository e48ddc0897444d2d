"""The mobile demo in a real browser: Debian's headless Chromium, driven by playwright-core (Node).

One browser session (mobile_demo/test/browser_check.mjs) loads the page served by `demo-web` with a
bundle made by the real export, runs every golden text through the page's own code and reports; the
tests below judge that report against Python. Locally they skip only when chromium or node is
absent; under CI (CI=true) a missing browser is a failure, since `make test` installs it.
The server tests at the top need no browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_student_run

from gendistill.runtime.bundle import write_json_atomic, write_manifest
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.preprocess import normalize
from gendistill.runtime.web import APP_FILES, VENDOR_FILES, demo_routes, start_demo_server

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "mobile_demo"
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOT = ARTIFACTS / "mobile-demo-390x844.png"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
TYPED_TEXT = "The striker scored a late goal in the cup final"
# Beyond golden.jsonl: strings where Python and JavaScript string handling could part ways.
EXTRA_TEXTS = [
    "ΟΔΥΣΣΕΥΣ ΣΑΣ Σ", "İSTANBUL", "STRASSE ẞ", "ǅemal ǈ", "Ⅻ ⓐⒶ", "Ⱥ ꞵ", "\u1c89 \ua7cb \U00010d50 \U00016ea0",
    "0123456789 ١٢٣ ０１２", "tab\tnew\nline\u00a0nbsp\u3000wide", "e\u0301 é ﬁ ㎏", "😀👍🏽 🇫🇷", "<s> </s> <unk> <pad>",
    "x" * 500,
]


# ---- the server, no browser needed ------------------------------------------------------------------


def _fake_bundle(path: Path) -> Path:
    path.mkdir()
    for name, data in {"model.onnx": b"onnx", "tokenizer.model": b"sp", "golden.jsonl": b""}.items():
        (path / name).write_bytes(data)
    write_json_atomic(path / "labels.json", ["a", "b"])
    write_manifest(path, {"labels": ["a", "b"]})
    return path


def _fake_app(path: Path) -> Path:
    for name in list(APP_FILES) + [f"node_modules/{target}" for target in VENDOR_FILES.values()]:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(f"// {name}\n", encoding="utf-8")
    return path


def test_server_sets_isolation_headers_and_wasm_mime_type(tmp_path):
    server, url = start_demo_server(_fake_bundle(tmp_path / "bundle"), app_dir=_fake_app(tmp_path / "app"))
    try:
        expected = {"": "text/html", "vendor/ort/ort-wasm-simd-threaded.wasm": "application/wasm",
                    "app.js": "text/javascript", "bundle/model.onnx": "application/octet-stream", "bundle/bundle.json": "application/json"}
        for path, mime in expected.items():
            with urllib.request.urlopen(url + path) as response:
                assert response.headers["Content-Type"].split(";")[0] == mime, path
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for path in ("../pyproject.toml", "bundle/../../pyproject.toml", "node_modules/onnxruntime-web/package.json", "bundle/"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(url + path)
            assert error.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_missing_node_modules_says_run_npm_ci(tmp_path, monkeypatch):
    from gendistill.runtime.cli import main

    bundle = _fake_bundle(tmp_path / "bundle")
    app = tmp_path / "app"
    app.mkdir()
    with pytest.raises(GendistillError, match="npm ci"):
        demo_routes(bundle, app)
    monkeypatch.setattr("gendistill.runtime.web.APP_DIR", app)
    result = CliRunner().invoke(main, ["demo-web", str(bundle), "--port", "0"])
    assert result.exit_code == 2
    assert "npm ci" in result.output and "Traceback" not in result.output


# ---- the page in headless Chromium -------------------------------------------------------------------


def _require(found: bool, reason: str) -> None:
    if found:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the browser tests; `make test` installs what they need)")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=["kim-cnn", "bigru", "static"])
def bundle(request, bundle, tmp_path_factory, toy_rows) -> Path:
    """Every browser check runs on the shared Kim-CNN bundle, on a bigru one (its graph has GRU nodes) and on a static
    one (`--student auto`'s choice for long texts: a weighted mean of int8 tables)."""
    if request.param == "kim-cnn":
        return bundle
    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    run_dir = make_student_run(tmp_path_factory.mktemp(f"{request.param}-run"), toy_rows, architecture=request.param)
    out = tmp_path_factory.mktemp(request.param) / "bundle"
    run_export(ExportSettings(), run_dir, out)
    return out


@pytest.fixture(scope="module")
def golden(bundle) -> list[dict]:
    with open(bundle / "golden.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def report(bundle, golden, tmp_path_factory) -> dict:
    """Run the page once in Chromium; every browser test reads this report."""
    _require(Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM}; install Debian's `chromium` (apt-get install -y chromium)")
    node = shutil.which("node")
    _require(node is not None, "node not found; install Node.js 20+ to run the browser tests")
    if not (DEMO / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"{DEMO / 'node_modules'} is incomplete; run `npm ci` in {DEMO} (or `make test`, which does).")

    work = tmp_path_factory.mktemp("browser")
    ARTIFACTS.mkdir(exist_ok=True)
    inputs, output = work / "input.json", work / "report.json"
    inputs.write_text(json.dumps({"texts": [g["text"] for g in golden] + EXTRA_TEXTS, "type_text": TYPED_TEXT}), encoding="utf-8")

    server, url = start_demo_server(bundle)
    process = subprocess.Popen(
        [node, "test/browser_check.mjs", url, str(inputs), str(output), str(SCREENSHOT)], cwd=DEMO,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
    )
    watchdog = threading.Timer(300, process.kill)  # a hung browser must not hang the suite
    watchdog.start()
    try:
        for line in process.stdout:
            if line.strip() == "STOP-SERVER":  # the offline check: take the server away for real
                server.shutdown()
                server.server_close()
                with pytest.raises(urllib.error.URLError):
                    urllib.request.urlopen(url, timeout=5)
                process.stdin.write("\n")
                process.stdin.flush()
        stderr = process.stderr.read()
        process.wait()
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
    assert output.is_file(), f"the browser driver wrote no report (exit {process.returncode}):\n{stderr[-3000:]}"
    result = json.loads(output.read_text(encoding="utf-8"))
    assert not result["errors"], "the page or its driver failed:\n" + "\n".join(result["errors"]) + f"\n{stderr[-3000:]}"
    return result


@pytest.mark.browser
def test_tokenizer_parity_on_every_golden_text(report, golden):
    browser_ids = [case["ids"] for case in report["cases"][: len(golden)]]
    mismatches = [(g["text"], g["ids"], ids) for g, ids in zip(golden, browser_ids) if g["ids"] != ids]
    assert len(browser_ids) == len(golden)
    assert not mismatches, f"{len(mismatches)}/{len(golden)} golden texts tokenized differently (text, python, browser): {mismatches[:5]}"


@pytest.mark.browser
def test_tokenizer_parity_on_hard_strings(report, bundle):
    import sentencepiece as spm

    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    pre = manifest["preprocessing"]
    sp = spm.SentencePieceProcessor(model_file=str(bundle / "tokenizer.model"))
    expected = [sp.encode(normalize(t, pre["lowercase"], pre["digits_to_zero"]))[: pre["max_length"]] for t in EXTRA_TEXTS]
    browser = [case["ids"] for case in report["cases"][-len(EXTRA_TEXTS):]]
    mismatches = [(t, e, b) for t, e, b in zip(EXTRA_TEXTS, expected, browser) if e != b]
    assert not mismatches, f"(text, python, browser): {mismatches}"


@pytest.mark.browser
def test_lowercasing_matches_python_for_every_code_point(report, bundle):
    """JS toLowerCase() follows a newer Unicode than Python's str.lower(); app.js must undo the difference."""
    pre = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))["preprocessing"]
    python = {}
    for code_point in range(sys.maxunicode + 1):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        char = chr(code_point)
        out = normalize(char, pre["lowercase"], pre["digits_to_zero"])
        if out != char:
            python[str(code_point)] = out
    browser = report["changed_code_points"]
    differ = sorted(set(python) ^ set(browser) | {cp for cp in set(python) & set(browser) if python[cp] != browser[cp]}, key=int)
    assert not differ, f"{len(differ)} code points normalize differently, e.g. {[hex(int(cp)) for cp in differ[:20]]}"


@pytest.mark.browser
def test_probabilities_match_python_within_1e5(report, golden):
    worst = max(
        (max(abs(a - b) for a, b in zip(g["probabilities"], case["probabilities"])), g["text"])
        for g, case in zip(golden, report["cases"])
    )
    assert worst[0] <= 1e-5, f"max |browser - python| probability {worst[0]:.3g} on {worst[1]!r}"


@pytest.mark.browser
def test_typing_shows_label_and_probability_bars(report, bundle):
    labels = json.loads((bundle / "labels.json").read_text(encoding="utf-8"))
    ui = report["ui"]
    assert ui["label"] in labels
    assert [bar["name"] for bar in ui["bars"]] == labels
    top = [bar for bar in ui["bars"] if bar["top"]]
    assert len(top) == 1 and top[0]["name"] == ui["label"] and top[0]["width"] > 0
    assert sum(float(bar["value"].rstrip("%")) for bar in ui["bars"]) == pytest.approx(100, abs=0.5)
    assert ui["page_width"] <= 390, "the page scrolls sideways on a 390 px wide phone"
    assert report["typing_latency"]["runs"] > 0
    with open(SCREENSHOT, "rb") as handle:  # a PNG of exactly the phone viewport
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (390, 844)


@pytest.mark.browser
def test_page_reports_batch1_latency(report, capsys):
    bench, typing = report["benchmark"], report["typing_latency"]
    assert report["cross_origin_isolated"] and bench["cross_origin_isolated"], "COOP/COEP missing: timings are coarse"
    assert 0 < bench["total_ms"] < 50
    summary = (f"browser batch-1 latency (Chromium {report['browser']}, tokenize+infer, median of {bench['runs']}): "
               f"{bench['total_ms']:.3f} ms (tokenize {bench['tokenize_ms']:.3f}, infer {bench['infer_ms']:.3f}); "
               f"while typing: median {typing['median_ms']:.3f} ms over {typing['runs']} keystrokes")
    write_json_atomic(ARTIFACTS / "mobile-demo-latency.json", {"benchmark": bench, "typing": typing, "browser": report["browser"]})
    with capsys.disabled():
        print(f"\n{summary}")


@pytest.mark.browser
def test_page_works_offline_once_loaded(report):
    offline = report["offline"]
    assert report["offline_ready"]
    assert offline["served_by"] == "service-worker"
    assert offline["offline"] == pytest.approx(offline["online"], abs=1e-7)


@pytest.mark.browser
def test_demo_web_cli_prints_url_and_serves(bundle):
    if not (DEMO / "node_modules").is_dir():
        pytest.fail(f"run `npm ci` in {DEMO} (or `make test`, which does)")
    process = subprocess.Popen([sys.executable, "-m", "gendistill.runtime.cli", "demo-web", str(bundle), "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b'src="./app.js"' in response.read()
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    finally:
        process.terminate()
        process.wait(timeout=10)
