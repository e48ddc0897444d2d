"""Synthesis backends on a tiny Llama built in code (SmolLM2's architecture; nothing downloads): the
CTranslate2 conversion, seeded determinism per backend, resume after an interrupted shard, the fallback
when ctranslate2 is missing, and `gendistill bench-synthesize`."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gendistill.compressor.rundir import begin_stage, finish_stage, read_jsonl, write_jsonl_atomic
from gendistill.compressor.synthesize import SynthesizeSettings, run_synthesize
from gendistill.runtime.bundle import write_json_atomic
from gendistill.runtime.cli import main
from gendistill.runtime.errors import GendistillError
from tiny_models import make_tiny_llama

pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory, toy_rows) -> Path:
    """A run whose data and generator stages are finished; the generator is a tiny random Llama."""
    run_dir = tmp_path_factory.mktemp("synth") / "run"
    data = begin_stage(run_dir, "data")
    for name, part in (("train", toy_rows[:60]), ("dev", toy_rows[60:90]), ("test", toy_rows[90:120])):
        write_jsonl_atomic(data / f"{name}.jsonl", [{"text": t, "label": y} for t, y in part])
    write_jsonl_atomic(data / "unlabeled.jsonl", [])
    write_json_atomic(data / "labels.json", sorted({y for _, y in toy_rows}))
    finish_stage(run_dir, "data", {}, {})
    generator = begin_stage(run_dir, "generator")
    make_tiny_llama(generator / "model", [t for t, _ in toy_rows])
    finish_stage(run_dir, "generator", {}, {})
    (run_dir / "run.json").write_text("{}")
    return run_dir


def settings(**changes) -> SynthesizeSettings:
    return SynthesizeSettings(**{"count": 40, "max_new_tokens": 12, "batch_size": 8, "shard_size": 16, "device": "cpu", **changes})


def synthesize(run_dir: Path, **changes) -> list[str]:
    run_synthesize(settings(**changes), run_dir)
    return [json.loads(line)["text"] for line in (run_dir / "synthesize" / "synthetic.jsonl").read_text().splitlines()]


def copy_run(generator_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(generator_run, tmp_path / "run", ignore=shutil.ignore_patterns("synthesize*")))


def test_synthetic_texts_with_line_separators_stay_one_record_per_line(tmp_path):
    # A random generator samples any byte: \x85, \u2028 and \u2029 break lines for str.splitlines and many tools
    rows = [{"text": "a\x85b"}, {"text": "c\u2028d\u2029e"}, {"text": "plain é"}]
    write_jsonl_atomic(tmp_path / "synthetic.jsonl", rows)
    text = (tmp_path / "synthetic.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line) for line in text.splitlines()] == rows == read_jsonl(tmp_path / "synthetic.jsonl")
    assert "é" in text  # UTF-8 kept readable, only line breaks escaped


@pytest.mark.parametrize("sampler", ["hf", "ctranslate2"])
def test_each_backend_is_deterministic_per_seed(generator_run, tmp_path, sampler):
    first = synthesize(copy_run(generator_run, tmp_path / "a"), sampler=sampler)
    second = synthesize(copy_run(generator_run, tmp_path / "b"), sampler=sampler)
    other_seed = synthesize(copy_run(generator_run, tmp_path / "c"), sampler=sampler, seed=1)
    assert len(first) == 40 and first == second and first != other_seed
    metrics = json.loads((tmp_path / "a" / "run" / "synthesize" / "metrics.json").read_text())
    assert metrics["sampler"] == sampler and metrics["kept_texts_per_second"] > 0 and metrics["tokens_per_second"] > 0
    assert 0 <= metrics["dropped_share"] < 1


def test_ctranslate2_workers_each_sample_their_own_seeded_stream(generator_run, tmp_path):
    """A shard split between two one-thread generators: each worker's thread takes its own seed (a generator seeds
    itself from the global seed when it first samples, so without care both would repeat the last one set), and
    the shard repeats exactly."""
    from gendistill.compressor.samplers import open_sampler

    run_dir = copy_run(generator_run, tmp_path)
    wanted = settings(sampler="ctranslate2")
    two = open_sampler(wanted, run_dir, workers=2)
    assert two.workers == 2
    shard = [row["text"] for row in two.sample(16, wanted, seed=3)]
    assert shard == [row["text"] for row in two.sample(16, wanted, seed=3)]
    assert shard[:8] != shard[8:] and len(set(shard)) > 8
    assert shard != [row["text"] for row in two.sample(16, wanted, seed=4)]


def test_opening_ctranslate2_generators_keeps_torchs_threads(generator_run, tmp_path):
    """CTranslate2 sets the OpenMP thread count of the thread that opens a generator (to its intra_threads, 1 for a
    worker), which torch's passes use too: the stages after synthesis (annotation, distillation) must keep torch's
    threads. In a fresh interpreter, as a run is (here, in pytest's, OpenMP's count did not move either way)."""
    import subprocess
    import sys

    run_dir = copy_run(generator_run, tmp_path)
    script = f"""
import re, torch
from gendistill.compressor.samplers import open_sampler
from gendistill.compressor.synthesize import SynthesizeSettings
torch.set_num_threads(2)
wanted = SynthesizeSettings(count=4, max_new_tokens=4, batch_size=4, shard_size=4, device="cpu", sampler="ctranslate2")
open_sampler(wanted, {str(run_dir)!r}, workers=2).sample(4, wanted, seed=3)
print(re.search(r"omp_get_max_threads\\(\\) : (\\d+)", torch.__config__.parallel_info()).group(1))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "2"


def test_ctranslate2_conversion_is_made_once_and_atomically(generator_run, tmp_path):
    run_dir = copy_run(generator_run, tmp_path)
    synthesize(run_dir, sampler="ctranslate2")
    converted = run_dir / "generator" / "ct2-int8"
    assert (converted / "model.bin").is_file() and not converted.with_name("ct2-int8.partial").exists()
    # A conversion killed midway leaves only a .partial, which the next run removes and redoes.
    shutil.rmtree(converted)
    (converted.with_name("ct2-int8.partial")).mkdir()
    (converted.with_name("ct2-int8.partial") / "model.bin").write_bytes(b"half")
    shutil.rmtree(run_dir / "synthesize")
    assert synthesize(run_dir, sampler="ctranslate2") == synthesize(copy_run(generator_run, tmp_path / "fresh"), sampler="ctranslate2")


def test_interrupted_ctranslate2_synthesis_resumes_from_its_shards(generator_run, tmp_path, monkeypatch):
    from conftest import interrupt_second_shard

    reference = synthesize(copy_run(generator_run, tmp_path / "reference"), sampler="ctranslate2")
    run_dir = copy_run(generator_run, tmp_path / "killed")
    restore = interrupt_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_synthesize(settings(sampler="ctranslate2"), run_dir)
    assert len(list((run_dir / "synthesize.partial").glob("shard-*.jsonl"))) == 1
    restore()
    assert synthesize(run_dir, sampler="ctranslate2") == reference  # shard seeds depend only on the shard's index


def test_auto_falls_back_to_hf_in_one_sentence_and_explicit_refuses(generator_run, tmp_path, monkeypatch, caplog):
    import gendistill.compressor.samplers as samplers

    monkeypatch.setattr(samplers, "ct2_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="gendistill.compressor.samplers"):
        texts = synthesize(copy_run(generator_run, tmp_path / "auto"), sampler="auto")
    assert texts == synthesize(copy_run(generator_run, tmp_path / "hf"), sampler="hf")
    assert [r.message for r in caplog.records if "ctranslate2 is not installed" in r.message]
    with pytest.raises(GendistillError, match="needs the ctranslate2 package"):
        run_synthesize(settings(sampler="ctranslate2"), copy_run(generator_run, tmp_path / "explicit"))


def _refuse_conversion(model_dir, ct2_dir, quantization):
    raise GendistillError("CTranslate2 cannot convert this generator (NotImplementedError: Toy); use --sampler hf.")


class _LoadsButCannotRun:
    """CTranslate2 built for CUDA 12 on a CUDA 13 GPU (seen on an H200): the generator loads, its first generation fails."""

    def __init__(self, **options):
        pass

    def generate_batch(self, *args, **kwargs):
        raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")


@pytest.mark.parametrize("failure, message", [("convert", "CTranslate2 cannot convert this generator"),
                                              ("run", "CTranslate2 cannot run on cpu here (Library libcublas.so.12 is not found")])
def test_ctranslate2_that_cannot_convert_or_run_falls_back_when_auto(generator_run, tmp_path, monkeypatch, caplog, failure, message):
    """Found out before sampling: `auto` falls back to transformers with one sentence; asked for explicitly, it is
    refused before any shard is written."""
    import ctranslate2

    import gendistill.compressor.samplers as samplers

    if failure == "convert":
        monkeypatch.setattr(samplers, "convert_ct2", _refuse_conversion)
    else:
        monkeypatch.setattr(ctranslate2, "Generator", _LoadsButCannotRun)
    with caplog.at_level(logging.INFO, logger="gendistill.compressor.samplers"):
        synthesize(copy_run(generator_run, tmp_path / "auto"), sampler="auto")
    assert json.loads((tmp_path / "auto" / "run" / "synthesize" / "metrics.json").read_text())["sampler"] == "hf"
    assert any(message in r.message for r in caplog.records)
    with pytest.raises(GendistillError, match=re.escape(message)):  # asked for explicitly: refused, no silent fallback
        run_synthesize(settings(sampler="ctranslate2"), copy_run(generator_run, tmp_path / "explicit"))
    assert not list((tmp_path / "explicit" / "run" / "synthesize").glob("shard-*"))


def test_bench_synthesize_compares_backends(generator_run):
    result = CliRunner().invoke(main, ["bench-synthesize", str(generator_run), "--count", "24", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["backends"]) == {"hf", "ctranslate2", "ctranslate2-one-worker"}
    for figures in report["backends"].values():
        assert figures["sampled"] == 24 and figures["texts_per_second"] > 0 and figures["tokens_per_second"] > 0
        assert figures["peak_rss_mib"] > 0 and figures["nll_per_token"] > 0
        assert 0 <= figures["distinct_2"] <= 1 and figures["length_words"]["mean"] >= 0
    table = CliRunner().invoke(main, ["bench-synthesize", str(generator_run), "--count", "8", "--backends", "hf"])
    assert table.exit_code == 0 and "kept texts/s" in table.stdout and "NLL per token" in table.stdout


@pytest.mark.parametrize("sampler", ["hf", "ctranslate2"])
def test_prefixed_texts_open_with_the_start_of_a_training_text(generator_run, tmp_path, sampler):
    from transformers import AutoTokenizer

    from gendistill.compressor.synthesize import prefixes

    tokenizer = AutoTokenizer.from_pretrained(generator_run / "generator" / "model")
    train = [json.loads(line)["text"] for line in (generator_run / "data" / "train.jsonl").read_text().splitlines()]
    openings = tokenizer(train, add_special_tokens=False)["input_ids"]
    chosen = prefixes(openings, 200, 0.5, seed=3)
    assert chosen == prefixes(openings, 200, 0.5, seed=3) and 60 < sum(map(bool, chosen)) < 140
    assert all(not p or any(ids[: len(p)] == p and len(p) <= max(1, len(ids) // 2) for ids in openings) for p in chosen)

    texts = synthesize(copy_run(generator_run, tmp_path), sampler=sampler, prefix_share=1.0)
    starts = {tokenizer.decode(ids[:1]).strip() for ids in openings}
    assert len(texts) == 40 and all(any(text.startswith(start) for start in starts) for text in texts)
    # Left padding must not change what a row continues: a prefixed batch shares no text with the unprompted one.
    assert set(texts).isdisjoint(synthesize(copy_run(generator_run, tmp_path / "plain"), sampler=sampler))


def test_nearest_similarity_tells_on_topic_text_from_noise():
    from gendistill.compressor.synthesize import nearest_similarity

    reference = ["a gorgeous and witty film", "a dull, overlong film", "the acting is wooden and the plot thin"]
    assert nearest_similarity(["a witty film"], reference) > 0.5
    assert nearest_similarity(["zxq blorp", "qqq"], reference) == 0.0
    assert nearest_similarity([], reference) is None


@pytest.mark.parametrize("sampler", ["hf", "ctranslate2"])
def test_a_label_conditioned_generator_writes_the_class_it_is_asked_for(generator_run, tmp_path, sampler):
    from conftest import _WORDS

    from gendistill.compressor.generator import GeneratorSettings, load_label_prompts, run_generator
    from gendistill.compressor.rundir import load_labels

    run_dir = copy_run(generator_run, tmp_path)
    shutil.rmtree(run_dir / "generator")
    run_generator(GeneratorSettings(model=str(generator_run / "generator" / "model"), conditional=True, epochs=60, lr=5e-3, batch_size=4,
                                    device="cpu"), run_dir)
    labels = load_labels(run_dir)
    assert load_label_prompts(run_dir) == [f"{label}:" for label in labels]
    texts = synthesize(run_dir, sampler=sampler, count=120, max_new_tokens=20)
    rows = [json.loads(line) for line in (run_dir / "synthesize" / "synthetic.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == texts and {row["prompted"] for row in rows} == set(range(len(labels)))
    assert not any(text.split(":")[0] in labels for text in texts)  # the prompt is cut from the text
    # Each text uses the topic words of the class it was prompted with far more than those of the others.
    asked, other = 0, 0
    for row in rows:
        words = set(row["text"].lower().replace(".", " ").replace("!", " ").split())
        for k, label in enumerate(labels):
            hits = len(words & set(_WORDS[label]))
            asked, other = (asked + hits, other) if k == row["prompted"] else (asked, other + hits)
    assert asked >= 15 and asked > 2 * other, (asked, other)  # an unconditioned generator gives about asked = other / 2


def test_label_prompts_and_prefixes_are_refused_together_before_anything_is_written(generator_run, tmp_path):
    run_dir = copy_run(generator_run, tmp_path)
    (run_dir / "generator" / "model" / "label_prompts.json").write_text(json.dumps({"prompts": ["a:", "b:", "c:"]}))
    with pytest.raises(GendistillError, match="label-conditioned"):
        run_synthesize(settings(prefix_share=0.5), run_dir)
    assert not list(run_dir.glob("synthesize*"))
