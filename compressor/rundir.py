"""The run directory: where each stage reads its inputs and writes its outputs.

    RUN_DIR/
      data/        train.jsonl dev.jsonl test.jsonl unlabeled.jsonl labels.json   (splits; label strings)
      teacher/     model/ (a Hugging Face classifier)
      generator/   model/ (a Hugging Face causal LM)
      synthesize/  synthetic.jsonl  ({"text"} per line, unique, not copies of training texts), sampling.json
      annotate/    synthetic.npy train.npy dev.npy test.npy  (teacher class logits)
      distill/     student/ labeled_only/  (student.json, student.safetensors, tokenizer.model)
      evaluate/    (metrics only)
      bundle/      the export stage: the deployable bundle (gendistill.runtime.bundle's layout)
      report.md report.json report.png run.json

Every stage directory also holds `settings.json` (what made it, and the ids of the stages it was built
on) and `metrics.json`, written last: a stage is complete exactly when its `metrics.json` exists. Stages
write into `<dir>.partial/` and are renamed into place, so a killed run never leaves a stage
half-written under its real name; `recover` finishes (or undoes) a rename a kill interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from gendistill.runtime.bundle import json_line, write_atomic, write_json_atomic

STAGES = ("data", "teacher", "generator", "synthesize", "annotate", "distill", "evaluate", "export")
STAGE_DIRS = {stage: ("bundle" if stage == "export" else stage) for stage in STAGES}
INPUTS = {
    "data": (),
    "teacher": ("data",),
    "generator": ("data",),
    "synthesize": ("generator",),
    "annotate": ("teacher", "synthesize"),
    "distill": ("annotate",),
    "evaluate": ("distill",),
    "export": ("distill",),
}
"""The stages each stage reads directly. Re-making a stage re-makes what depends on it and nothing else:
a new teacher keeps the generator and its synthetic texts, the slowest part of a run."""


def stage_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / STAGE_DIRS[stage]


def is_complete(run_dir: str | Path, stage: str) -> bool:
    return (stage_path(run_dir, stage) / "metrics.json").is_file()


def partial_path(run_dir: str | Path, stage: str, final: Path | None = None) -> Path:
    final = stage_path(run_dir, stage) if final is None else Path(final)
    return final.with_name(final.name + ".partial")


def begin_stage(run_dir: str | Path, stage: str, keep_partial: bool = False, final: Path | None = None) -> Path:
    """A fresh `<dir>.partial/` to write into (kept when the stage can resume from it, like synthesize).

    `final` puts the stage's output somewhere else than the run directory (`gendistill export --out`).
    """
    partial = partial_path(run_dir, stage, final)
    kill_point(f"{partial.name[: -len('.partial')]}:begin")
    if partial.exists() and not keep_partial:
        remove_dir(partial)
    partial.mkdir(parents=True, exist_ok=True)
    return partial


def stage_id(run_dir: str | Path, stage: str) -> str | None:
    """The random id a stage got when it finished; later stages record the ids they were built on."""
    if not is_complete(run_dir, stage):
        return None
    return read_json(stage_path(run_dir, stage) / "metrics.json").get("stage_id")


def depends_on(stage: str) -> list[str]:
    """Every stage whose output `stage` is built on, directly or not, in pipeline order."""
    found, todo = set(), list(INPUTS[stage])
    while todo:
        earlier = todo.pop()
        if earlier not in found:
            found.add(earlier)
            todo.extend(INPUTS[earlier])
    return [s for s in STAGES if s in found]


def upstream_ids(run_dir: str | Path, stage: str) -> dict:
    return {s: stage_id(run_dir, s) for s in depends_on(stage) if is_complete(run_dir, s)}


def is_stale(run_dir: str | Path, stage: str) -> bool:
    """Was this finished stage built on outputs that have been re-made since (an interrupted re-run, or a stage
    left out of the re-run: `--no-export` after `--from distill` keeps the old bundle)?"""
    inputs = depends_on(stage)
    built_on = read_json(stage_path(run_dir, stage) / "settings.json").get("upstream") or {}
    return {s: i for s, i in built_on.items() if s in inputs} != upstream_ids(run_dir, stage)  # older runs recorded every earlier stage


def finish_stage(run_dir: str | Path, stage: str, settings: dict, metrics: dict, final: Path | None = None) -> Path:
    """Write settings and metrics (the completion marker) into the partial dir, then move it into place.

    settings.json also records which finished upstream stages this output was built on, so a stage
    whose inputs were re-made since is seen as stale.
    """
    final = stage_path(run_dir, stage) if final is None else Path(final)
    partial = partial_path(run_dir, stage, final)
    write_json_atomic(partial / "settings.json", {**settings, "upstream": upstream_ids(run_dir, stage)})
    kill_point(f"{final.name}:settings-written")
    write_json_atomic(partial / "metrics.json", {**metrics, "stage_id": uuid.uuid4().hex})
    kill_point(f"{final.name}:metrics-written")
    replace_dir(partial, final)
    return final


def replace_dir(new: Path, final: Path) -> None:
    """Rename the finished directory `new` to `final`; an old `final` is moved aside first, then removed,
    so that at every moment either the old or the new directory is complete (`recover` tidies up after a
    kill between these steps)."""
    old = final.with_name(final.name + ".old")
    if final.is_dir() and any(final.iterdir()):
        if old.exists():  # left by a replacement that was killed after its first rename
            remove_dir(old)
        os.replace(final, old)
        kill_point(f"{final.name}:moved-aside")
        os.replace(new, final)
        kill_point(f"{final.name}:moved-in")
        remove_dir(old)
    else:
        if final.is_dir():
            final.rmdir()  # empty: os.replace cannot rename a directory onto it on every platform
        os.replace(new, final)
        kill_point(f"{final.name}:moved-in")


def recover(final: Path) -> None:
    """Finish what a kill inside `finish_stage` or `replace_dir` left of the stage directory `final`.

    A `<dir>.partial/` holding metrics.json is finished (metrics.json is written last, just before the
    rename): it is moved into place, being the newest complete output. Else, when `final` is missing, a
    `<dir>.old/` is the complete previous output (killed between replace_dir's two renames): it is put
    back. A `<dir>.old/` beside a complete `final` (killed before its removal) is removed. Unfinished
    partials are left alone: re-making the stage removes them, or resumes from them (synthesize).
    """
    final = Path(final)
    partial, old = final.with_name(final.name + ".partial"), final.with_name(final.name + ".old")
    if (partial / "metrics.json").is_file():
        replace_dir(partial, final)
    elif not (final / "metrics.json").is_file() and (old / "metrics.json").is_file():
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        if not final.exists():
            os.replace(old, final)
    if old.exists() and (final / "metrics.json").is_file():
        remove_dir(old)


def recover_run(run_dir: str | Path) -> None:
    """`recover` every stage directory of a run, and remove the temporary files a killed atomic write left."""
    run_dir = Path(run_dir)
    for stage in STAGES:
        recover(stage_path(run_dir, stage))
    remove_temporaries(run_dir)


def remove_dir(path: Path) -> None:
    """Remove a stage directory, its completion marker first: a removal cut short by a kill never leaves
    a directory that looks complete with files missing."""
    path = Path(path)
    (path / "metrics.json").unlink(missing_ok=True)
    shutil.rmtree(path)


def remove_temporaries(directory: Path) -> None:
    """Remove the `.NAME.XXXX.tmp` files of atomic writes (write_json_atomic, write_jsonl_atomic) that a
    kill cut off before their rename; nothing else reads them."""
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def kill_point(point: str) -> None:
    """A named moment of a run where tests/test_kill.py SIGKILLs the process: the narrow windows between
    two writes or renames that a kill at a random time would rarely hit.

    Inert unless the test sets these environment variables: GENDISTILL_TEST_TRACE=FILE appends
    "<time> <point>" to FILE at every point; GENDISTILL_TEST_PAUSE=POINT stops the process (SIGSTOP)
    when it reaches POINT, so the test can kill it exactly there. Points: "<dir>:begin",
    "<dir>:settings-written", "<dir>:metrics-written", "<dir>:moved-aside", "<dir>:moved-in" (dir: a
    stage directory's name, e.g. teacher, bundle), "<stage>:start" (pipeline), "synthesize:sampling:<shard>",
    "synthesize:sampled:<shard>", "synthesize:written:<shard>", "annotate:written:<split>:<chunk>", "ct2:converted",
    "benchmark:row:<row>".
    """
    trace = os.environ.get("GENDISTILL_TEST_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} {point}\n")
    if os.environ.get("GENDISTILL_TEST_PAUSE") == point:
        os.kill(os.getpid(), signal.SIGSTOP)


def resumable(path: Path, marker: dict) -> dict | None:
    """The record a resumable stage keeps beside its partial work (synthesis's shards, annotation's chunks) at `path`,
    when it holds `marker`'s values (what that work was made from: settings, upstream stages) for every key of it;
    None when there is none or it differs, so the partial work is not to be resumed from."""
    saved = read_json(path) if path.is_file() else None
    same = saved is not None and {k: saved.get(k) for k in marker} == json.loads(json.dumps(marker))  # compared as JSON reads back
    return saved if same else None


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl_atomic(path: str | Path, rows) -> None:
    """One JSON object per line, written atomically (`rows` may be a generator: it is streamed)."""
    write_atomic(path, lambda handle: handle.writelines(json_line(row) + "\n" for row in rows))


def load_labels(run_dir: str | Path) -> list[str]:
    return read_json(stage_path(run_dir, "data") / "labels.json")


def load_split(run_dir: str | Path, split: str) -> tuple[list[str], list[int]]:
    """Texts and label indices (into `load_labels`) of one split: train, dev, test or unlabeled."""
    labels = load_labels(run_dir)
    index = {label: i for i, label in enumerate(labels)}
    rows = read_jsonl(stage_path(run_dir, "data") / f"{split}.jsonl")
    return [r["text"] for r in rows], [index[r["label"]] if r.get("label") is not None else -1 for r in rows]
