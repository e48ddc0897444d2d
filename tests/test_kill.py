"""Kill tests: `gendistill compress`, `export` and `benchmark` run in a subprocess (tiny models built in
code), are SIGKILLed at seeded random moments and at the narrow windows `rundir.kill_point` names (inside
finish_stage, between replace_dir's renames, between a shard's sampling and its write, ...), and are run
again until they finish. The finished run must equal an uninterrupted one with the same seed wherever the
stage is deterministic (on CPU with one thread every file compared here is byte-identical between two
processes), leave no `.partial`/`.old` directory, and redo at most one shard of synthesis per kill.

How a kill lands: the child appends "<time> <point>" to $GENDISTILL_TEST_TRACE at every kill point; with
$GENDISTILL_TEST_PAUSE=<point> it stops itself (SIGSTOP) there and is killed stopped; a random kill is
sent a seeded random fraction of the stage's duration (measured on the uninterrupted run) after the
trace shows the stage starting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import interrupt_second_shard
from tiny_models import make_tiny_generator, make_tiny_llama, make_tiny_teacher

kill_test = pytest.mark.skipif(not hasattr(signal, "SIGSTOP") or sys.platform == "win32", reason="needs POSIX signals")

CLI = [sys.executable, "-c", "from gendistill.runtime.cli import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
"""One thread: torch's CPU kernels then give byte-identical results from one process to the next."""
TIMEOUT = 240
CT2 = importlib.util.find_spec("ctranslate2") is not None
"""Without ctranslate2 synthesis samples with transformers and converts nothing."""


@dataclass
class Outcome:
    how: str  # "finished" (exit code in `code`), "paused" (killed at the pause point) or "killed" (random time)
    code: int | None
    trace: list[tuple[float, str]] = field(default_factory=list)
    output: str = ""

    def points(self) -> list[str]:
        return [p for _, p in self.trace]


class Runner:
    """Starts the CLI in its own process group and SIGKILLs that group, nothing else."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def __call__(self, *args, pause: str | None = None, kill_after: tuple[str | None, float] | None = None) -> Outcome:
        """Run `gendistill ARGS`; stop it at the kill point `pause`, or SIGKILL it `delay` seconds after the
        trace shows `point` (`kill_after=(point, delay)`; point None: after the start)."""
        self.count += 1
        trace, log = self.root / f"trace-{self.count:02d}.txt", self.root / f"output-{self.count:02d}.txt"
        env = {**ENV, "GENDISTILL_TEST_TRACE": str(trace)}
        if pause is not None:
            env["GENDISTILL_TEST_PAUSE"] = pause
        with open(log, "w") as output:
            proc = subprocess.Popen([*CLI, *map(str, args)], env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        started, how = time.time(), None
        try:
            while how is None:
                pid, status = os.waitpid(proc.pid, os.WNOHANG | os.WUNTRACED)
                if pid and os.WIFSTOPPED(status):
                    self._kill(proc)
                    how = "paused"
                elif pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    how = "finished"
                elif kill_after is not None and self._due(trace, started, *kill_after):
                    self._kill(proc)
                    how = "killed" if proc.returncode == -signal.SIGKILL else "finished"
                elif time.time() - started > TIMEOUT:
                    raise AssertionError(f"gendistill {' '.join(map(str, args))} ran over {TIMEOUT} s:\n{log.read_text()[-3000:]}")
                else:
                    time.sleep(0.01)
        finally:
            if proc.returncode is None:
                self._kill(proc)
        return Outcome(how, proc.returncode if how == "finished" else None, read_trace(trace), log.read_text())

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    @staticmethod
    def _due(trace: Path, started: float, point: str | None, delay: float) -> bool:
        if point is None:
            return time.time() >= started + delay
        at = next((t for t, p in read_trace(trace) if p == point), None)
        return at is not None and time.time() >= at + delay


def read_trace(path: Path) -> list[tuple[float, str]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        stamp, _, point = line.partition(" ")
        if point:  # a line being written when the process was killed may be cut
            rows.append((float(stamp), point))
    return rows


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".partial", ".old")) or (p.name.startswith(".") and p.name.endswith(".tmp")))


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory, toy_rows):
    root = tmp_path_factory.mktemp("kill-models")
    texts = [t for t, _ in toy_rows]
    return make_tiny_teacher(root / "teacher", texts), make_tiny_generator(root / "generator", texts)


def compress_args(toy_csv, models, run_dir, *extra) -> list:
    teacher, generator = models
    # 8 texts per shard: 24 synthetic texts take at least 3 shards, so kills land between shards.
    return ["compress", toy_csv, "--out", run_dir, "--per-class", 20, "--teacher", teacher, "--generator", generator,
            "--teacher-epochs", 2, "--teacher-lr", "1e-3", "--synthetic", 24, "--synthesis-batch", 8, "--synthesis-shard", 8,
            "--max-new-tokens", 12, "--vocab-size", 150, "--student-epochs", 3, "--student-epoch-examples", 500, "--max-length", 32, "--dev-size", 30,
            "--test-size", 30, *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_csv, models):
    """The uninterrupted run, and how long each stage took in it (from its trace)."""
    root = tmp_path_factory.mktemp("kill-reference")
    run = Runner(root)
    outcome = run(*compress_args(toy_csv, models, root / "run"))
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    starts = [(t, p.split(":")[0]) for t, p in outcome.trace if p.endswith(":start")]
    end = outcome.trace[-1][0]
    durations = {stage: (starts[i + 1][0] if i + 1 < len(starts) else end) - t for i, (t, stage) in enumerate(starts)}
    times = {p: t for t, p in reversed(outcome.trace)}
    durations["export-work"] = times["bundle:settings-written"] - times["bundle:begin"]
    return root / "run", durations, sampled_shards(outcome)


def sampled_shards(outcome: Outcome) -> list[int]:
    return [int(p.rsplit(":", 1)[1]) for p in outcome.points() if p.startswith("synthesize:sampling:")]


def assert_same_run(run_dir: Path, reference_dir: Path) -> None:
    """Deterministic outputs equal the uninterrupted run's; the run is complete and tidy."""
    assert leftovers(run_dir) == []
    for stage in ("data", "teacher", "generator", "synthesize", "annotate", "distill", "evaluate", "bundle"):
        assert (run_dir / stage / "metrics.json").is_file(), stage
    for name in ("train", "dev", "test", "unlabeled"):
        assert (run_dir / "data" / f"{name}.jsonl").read_bytes() == (reference_dir / "data" / f"{name}.jsonl").read_bytes(), name
    assert (run_dir / "synthesize" / "synthetic.jsonl").read_bytes() == (reference_dir / "synthesize" / "synthetic.jsonl").read_bytes()
    for name in ("synthetic", "train", "dev", "test"):
        np.testing.assert_array_equal(np.load(run_dir / "annotate" / f"{name}.npy"), np.load(reference_dir / "annotate" / f"{name}.npy"))
    assert_same_golden(run_dir / "bundle", reference_dir / "bundle")
    report = json.loads((run_dir / "report.json").read_text())
    expected = json.loads((reference_dir / "report.json").read_text())
    for model in ("teacher", "student", "student_labeled_only"):
        assert report[model]["test_accuracy"] == expected[model]["test_accuracy"], model


def assert_same_golden(bundle: Path, reference: Path) -> None:
    from gendistill.runtime.bundle import load_manifest

    load_manifest(bundle, verify=True)  # every file present and intact
    rows = [json.loads(line) for line in (bundle / "golden.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "golden.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "probabilities"} for r in rows] == \
           [{k: v for k, v in r.items() if k != "probabilities"} for r in expected]
    np.testing.assert_allclose([r["probabilities"] for r in rows], [r["probabilities"] for r in expected], atol=1e-6)


def check_shards(outcomes: list[Outcome], reference_shards: list[int]) -> None:
    """Every invocation redoes at most the one shard the kill before it interrupted; together they sample
    exactly the uninterrupted run's shards."""
    done: set[int] = set()
    for outcome in outcomes:
        shards = sampled_shards(outcome)
        assert len(set(shards) & done) <= 1, f"shards {sorted(set(shards) & done)} sampled again after one kill"
        done |= set(shards)
    assert sorted(done) == sorted(reference_shards)


# --- compress --------------------------------------------------------------------------------------


DETERMINISTIC_POINTS = [
    "teacher:metrics-written",      # finished in .partial, not yet renamed: moved into place, not re-trained
    "ct2:converted",                # ct2-int8.partial complete, not renamed: removed and converted again
    "synthesize:written:1",         # two shards on disk: the re-run resumes from them
    "synthesize:sampled:2",         # a shard sampled but not written: the one shard a kill may cost
    "synthesize:settings-written",  # shards already removed, synthetic.jsonl written: nothing re-sampled
    "annotate:written:synthetic:0",  # the synthetic texts' one chunk of logits saved: the re-run loads it
    "annotate:settings-written",    # inside finish_stage, before the completion marker: stage re-made
    "distill:metrics-written",
    "bundle:settings-written",
]


@pytest.mark.slow
@kill_test
def test_compress_killed_at_every_point_resumes_to_the_same_run(tmp_path, toy_csv, models, reference):
    """Killed once at each of DETERMINISTIC_POINTS in turn (each re-run resumes and goes on to the next),
    then a finished run's bundle re-made with --from export and killed between replace_dir's renames."""
    reference_dir, _, reference_shards = reference
    run_dir = tmp_path / "run"
    run = Runner(tmp_path)
    args = compress_args(toy_csv, models, run_dir)
    outcomes = []
    for point in [p for p in DETERMINISTIC_POINTS if CT2 or p != "ct2:converted"]:
        outcome = run(*args, pause=point)
        assert outcome.how == "paused", f"{point} never reached:\n{outcome.output[-3000:]}"
        outcomes.append(outcome)
        stage = point.split(":")[0]
        if point == "synthesize:written:1":  # the case checked by hand: two finished shards to resume from
            assert sorted(p.name for p in (run_dir / "synthesize.partial").glob("shard-*.jsonl")) == \
                   ["shard-00000.jsonl", "shard-00001.jsonl"]
        if point.endswith(":metrics-written"):
            assert not (run_dir / stage).exists() and (run_dir / f"{stage}.partial" / "metrics.json").is_file()
    outcome = run(*args)
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    outcomes.append(outcome)
    check_shards(outcomes, reference_shards)
    everything = [p for o in outcomes for p in o.points()]
    assert everything.count("teacher:start") == 1  # a teacher finished but not renamed is not trained again
    assert everything.count("ct2:converted") == (2 if CT2 else 0)  # the half-converted model is converted again, once
    assert everything.count("annotate:written:synthetic:0") == 2  # the saved chunk is loaded, not annotated again ...
    # ... until the kill inside finish_stage, whose re-run makes the stage anew (its chunks were removed before)
    assert_same_run(run_dir, reference_dir)

    # Re-making the bundle of a finished run (--from export), killed between replace_dir's renames.
    golden = (run_dir / "bundle" / "golden.jsonl").read_bytes()
    outcome = run(*args, "--from", "export", pause="bundle:moved-aside")
    assert outcome.how == "paused"
    assert not (run_dir / "bundle").exists() and (run_dir / "bundle.old" / "metrics.json").is_file()
    assert (run_dir / "bundle.partial" / "metrics.json").is_file()
    outcome = run(*args)  # the finished new bundle is moved in and the old one removed; nothing is re-made
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    assert not [p for p in outcome.points() if p.endswith((":start", ":begin"))]
    assert_same_run(run_dir, reference_dir)
    outcome = run(*args, "--from", "export", pause="bundle:moved-in")
    assert outcome.how == "paused" and outcome.points().count("bundle:begin") == 1
    assert (run_dir / "bundle" / "metrics.json").is_file() and (run_dir / "bundle.old").is_dir()
    outcome = run(*args)  # reuses every stage and removes the bundle.old the kill left
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    assert not [p for p in outcome.points() if p.endswith((":start", ":begin"))]
    assert_same_run(run_dir, reference_dir)
    assert (run_dir / "bundle" / "golden.jsonl").read_bytes() == golden


@pytest.mark.slow
@kill_test
def test_compress_killed_at_random_moments_resumes_to_the_same_run(tmp_path, toy_csv, models, reference):
    """One seeded random kill per stage (a random fraction of its duration in the uninterrupted run after
    it starts), and one during start-up; a stage that has finished by its turn is skipped."""
    reference_dir, durations, reference_shards = reference
    rng = random.Random(1234)
    run_dir = tmp_path / "run"
    run = Runner(tmp_path)
    args = compress_args(toy_csv, models, run_dir)
    schedule = [(None, rng.uniform(0.2, 2.0))]
    schedule += [(f"{stage}:start", rng.uniform(0.0, max(durations[stage], 0.3)))
                 for stage in ("teacher", "generator", "synthesize", "annotate", "distill", "evaluate", "export")]
    outcomes, kills = [], 0
    for point, delay in schedule:
        if point is not None and (run_dir / point.split(":")[0].replace("export", "bundle") / "metrics.json").is_file():
            continue
        outcome = run(*args, kill_after=(point, delay))
        outcomes.append(outcome)
        if outcome.how == "finished":
            assert outcome.code == 0, outcome.output[-3000:]
            break
        kills += 1
        assert not [p for p in leftovers(run_dir) if p.endswith(".old")]
    for _ in range(3):
        if outcomes[-1].how == "finished":
            break
        outcomes.append(run(*args))
    assert outcomes[-1].how == "finished" and outcomes[-1].code == 0, outcomes[-1].output[-3000:]
    assert kills >= 5, f"only {kills} random kills landed"
    check_shards(outcomes, reference_shards)
    assert_same_run(run_dir, reference_dir)


# --- export --------------------------------------------------------------------------------------


@pytest.mark.slow
@kill_test
def test_export_killed_leaves_no_half_bundle_and_reruns(tmp_path, reference):
    """`gendistill export RUN --out B`: B is either absent or a complete, verified bundle after every kill;
    the same command run again cleans B.partial and succeeds (or finds B already done)."""
    reference_dir, durations, _ = reference
    run = Runner(tmp_path)
    rng = random.Random(99)

    def check(bundle: Path) -> None:
        if bundle.exists():
            assert_same_golden(bundle, reference_dir / "bundle")

    bundle = tmp_path / "b"
    outcome = run("export", reference_dir, "--out", bundle, pause="b:settings-written")
    assert outcome.how == "paused" and not bundle.exists() and (tmp_path / "b.partial").is_dir()
    outcome = run("export", reference_dir, "--out", bundle, kill_after=("b:begin", rng.uniform(0.0, durations["export-work"])))
    check(bundle)
    if not bundle.exists():
        outcome = run("export", reference_dir, "--out", bundle, pause="b:metrics-written")
        assert outcome.how == "paused" and not bundle.exists()
    outcome = run("export", reference_dir, "--out", bundle)
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    assert "b:begin" not in outcome.points()  # the finished b.partial was moved in, not exported again
    assert leftovers(tmp_path) == []
    check(bundle)

    bundle = tmp_path / "c"
    outcome = run("export", reference_dir, "--out", bundle, pause="c:moved-in")  # killed right after the rename
    assert outcome.how == "paused" and (bundle / "metrics.json").is_file()
    outcome = run("export", reference_dir, "--out", bundle)  # the same command again: nothing left to do
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    assert "c:begin" not in outcome.points() and "already holds" in outcome.output
    assert leftovers(tmp_path) == []
    check(bundle)


# --- benchmark -----------------------------------------------------------------------------------


def benchmark_args(toy_csv, models, out) -> list:
    teacher, generator = models
    return ["benchmark", "--dataset", toy_csv, "--seeds", 1, "--per-class", 6, "--synthetic-counts", "0,8", "--no-oracle-curve",
            "--samplers", "hf", "--no-export", "--latency-texts", 5, "--out", out, "--teacher", teacher, "--generator", generator,
            "--teacher-epochs", 2, "--teacher-lr", "1e-3", "--synthesis-batch", 8, "--max-new-tokens", 12, "--vocab-size", 150,
            "--student-epochs", 2, "--student-epoch-examples", 500, "--max-length", 32, "--dev-size", 30, "--test-size", 30]


DETERMINISTIC_ROW_KEYS = ("accuracy_mean", "accuracy_per_seed", "macro_f1_mean", "params", "transfer_texts")


@pytest.mark.slow
@kill_test
def test_benchmark_killed_resumes_to_the_same_rows(tmp_path, toy_csv, models):
    pytest.importorskip("fasttext")
    pytest.importorskip("ctranslate2")  # the pipeline's own sampler, so that --samplers hf makes a variant run
    run = Runner(tmp_path)
    outcome = run(*benchmark_args(toy_csv, models, tmp_path / "reference"))
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    expected = json.loads((tmp_path / "reference" / "results.json").read_text())["datasets"]["toy"]

    out = tmp_path / "killed"
    args = benchmark_args(toy_csv, models, out)
    for point in ("synthesize:written:0",  # the shared run's one shard: the re-run samples nothing
                  "benchmark:row:fasttext",  # a cached row: not trained again
                  "seed0-sampler-hf/teacher:linked"):  # the sampler variant's links, cut before their rename
        outcome = run(*args, pause=point)
        assert outcome.how == "paused", f"{point} never reached:\n{outcome.output[-3000:]}"
    outcome = run(*args, kill_after=("distill:start", random.Random(7).uniform(0.0, 0.5)))  # the variant's student
    if outcome.how != "finished":
        outcome = run(*args)
    assert outcome.how == "finished" and outcome.code == 0, outcome.output[-3000:]
    results = json.loads((out / "results.json").read_text())["datasets"]["toy"]
    assert [r["model"] for r in results["rows"]] == [r["model"] for r in expected["rows"]]
    for row, want in zip(results["rows"], expected["rows"], strict=True):
        assert {k: row.get(k) for k in DETERMINISTIC_ROW_KEYS} == {k: want.get(k) for k in DETERMINISTIC_ROW_KEYS}, row["model"]
    assert [(a["ablation"], a["value"], a["accuracy_mean"]) for a in results["ablations"]] == \
           [(a["ablation"], a["value"], a["accuracy_mean"]) for a in expected["ablations"]]
    assert results["per_seed"]["0"]["synthesis"]["sampler"] == expected["per_seed"]["0"]["synthesis"]["sampler"]
    assert leftovers(out) == []


# --- the recovery rules, without processes ------------------------------------------------------------


def _stage(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / "model.bin").write_text(content)
    (path / "metrics.json").write_text("{}")
    return path


def test_recover_finishes_or_undoes_an_interrupted_move(tmp_path):
    from gendistill.compressor.rundir import recover

    # killed after metrics.json, before the rename: the finished partial is moved in
    _stage(tmp_path / "a.partial", "new")
    recover(tmp_path / "a")
    assert (tmp_path / "a" / "model.bin").read_text() == "new" and leftovers(tmp_path) == []
    # killed between the two renames: the finished partial wins over the old one
    _stage(tmp_path / "b.old", "old")
    _stage(tmp_path / "b.partial", "new")
    recover(tmp_path / "b")
    assert (tmp_path / "b" / "model.bin").read_text() == "new" and leftovers(tmp_path) == []
    # only the old one is complete (the new one unfinished): the old one is put back, the partial kept for re-making
    _stage(tmp_path / "c.old", "old")
    (tmp_path / "c.partial").mkdir()
    recover(tmp_path / "c")
    assert (tmp_path / "c" / "model.bin").read_text() == "old" and not (tmp_path / "c.old").exists()
    # killed before the old one was removed
    _stage(tmp_path / "d", "new")
    _stage(tmp_path / "d.old", "old")
    recover(tmp_path / "d")
    assert (tmp_path / "d" / "model.bin").read_text() == "new" and not (tmp_path / "d.old").exists()


def test_synthesis_does_not_resume_from_shards_of_other_settings(tmp_path, toy_rows, monkeypatch):
    """Shards left by a killed synthesis with other settings (say an interrupted --from synthesize --seed 1)
    are discarded, not mixed into this run's texts."""
    import gendistill.compressor.synthesize as stage
    from gendistill.compressor.rundir import begin_stage, finish_stage, write_jsonl_atomic
    from gendistill.runtime.bundle import write_json_atomic

    run_dir = tmp_path / "killed"
    data = begin_stage(run_dir, "data")
    write_jsonl_atomic(data / "train.jsonl", [{"text": t, "label": y} for t, y in toy_rows[:60]])
    write_jsonl_atomic(data / "dev.jsonl", [{"text": t, "label": y} for t, y in toy_rows[60:80]])
    write_json_atomic(data / "labels.json", sorted({y for _, y in toy_rows}))
    finish_stage(run_dir, "data", {}, {})
    generator = begin_stage(run_dir, "generator")
    make_tiny_llama(generator / "model", [t for t, _ in toy_rows])
    finish_stage(run_dir, "generator", {}, {})
    reference = Path(shutil.copytree(run_dir, tmp_path / "reference"))
    settings = stage.SynthesizeSettings(count=16, max_new_tokens=8, batch_size=8, shard_size=8, sampler="hf", device="cpu")
    other = stage.SynthesizeSettings(**{**settings.__dict__, "seed": 1})
    restore = interrupt_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        stage.run_synthesize(other, run_dir)
    assert len(list((run_dir / "synthesize.partial").glob("shard-*.jsonl"))) == 1
    restore()
    stage.run_synthesize(settings, run_dir)
    stage.run_synthesize(settings, reference)
    assert (run_dir / "synthesize" / "synthetic.jsonl").read_text() == (reference / "synthesize" / "synthetic.jsonl").read_text()
    assert json.loads((run_dir / "synthesize" / "metrics.json").read_text())["sampled"] == \
           json.loads((reference / "synthesize" / "metrics.json").read_text())["sampled"]
