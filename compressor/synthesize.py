"""Stage `synthesize`: sample new in-domain texts from the fine-tuned generator.

Sampling starts from BOS alone (no prompt; the paper), or for a share of the texts (`prefix_share`) from BOS and
the opening tokens of a random training text, batched, with one of the backends of `samplers` (CTranslate2
int8 or transformers); paper default: temperature 1, the full distribution (no top-k/top-p). Empty
texts, exact duplicates and copies of training texts are dropped. Shards are written as they complete,
so a killed run loses at most one shard and resumes; a shard's seed depends only on its index.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gendistill.compressor.data import text_key
from gendistill.compressor.generator import load_label_prompts
from gendistill.compressor.rundir import begin_stage, finish_stage, load_split, read_jsonl, write_jsonl_atomic
from gendistill.compressor.samplers import open_sampler
from gendistill.compressor.training import progress, resolve_device
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.settings import OnDevice, Seeded

log = logging.getLogger(__name__)


@dataclass
class SynthesizeSettings(Seeded, OnDevice):
    NAMES = {"count": "synthetic", "batch_size": "synthesis_batch", "shard_size": "synthesis_shard",
             "max_attempts_factor": "synthesis_max_attempts", "prefix_share": "synthesis_prefix_share"}

    count: int = 20_000
    """Unique synthetic texts to sample (0 skips the generator: plain KD on the labeled texts); the student learns from all of them (the bigru) or the surest ones (--keep-confident, --keep-share). The paper used 13,600-25,000."""
    sampler: Literal["auto", "hf", "ctranslate2"] = "auto"
    """Sampling engine: ctranslate2 (int8, several times faster on CPU), hf (transformers generate, the reference), auto (ctranslate2 when installed)."""
    sampling_temperature: float = 1.0
    """Temperature of sampling from the generator (paper: 1)."""
    top_k: int = 0
    """Sample from the k most likely tokens; 0 = the full distribution (paper)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1 = the full distribution (paper)."""
    max_new_tokens: int = 48
    """Longest synthetic text, in generator tokens."""
    batch_size: int = 256
    """Texts sampled together. Measured on 2 cores: 256 samples 30 kept texts/s with ctranslate2 (64: 18) and 6.1 with hf (64: 5.1), with the same sample quality (benchmarks/synthesis)."""
    shard_size: int = 256
    """Texts per shard file; a killed run loses at most one shard."""
    prefix_share: float = 0.0
    """Share of synthetic texts started from the opening tokens of a random training text (1 to half of its generator tokens) instead of BOS alone; the kept text is that opening and its continuation (0 = the paper). On the demo's split 1 kept samples on-topic but gave a weaker student (67.5 ± 0.4% against 68.8 ± 0.7%, benchmarks/student)."""
    max_attempts_factor: float = 4.0
    """Give up after sampling this many times the requested count (a generator that only repeats itself)."""

    def validate(self):
        self.at_least("count", 0)
        self.positive("sampling_temperature")
        self.at_least("top_k", 0)
        self.between("top_p", 0, 1, low_open=True)
        self.at_least("max_new_tokens", 1)
        self.at_least("batch_size", 1)
        self.at_least("shard_size", 1)
        self.at_least("max_attempts_factor", 1)
        self.between("prefix_share", 0, 1)


def drop_reason(key: str, seen: set[str], training_keys: set[str]) -> str | None:
    """Why a sampled text (by its `text_key`) is not kept: "empty", "copy_of_training" or "duplicate" of
    a text in `seen`; None keeps it. The one filter the stage and `bench-synthesize` both count with."""
    if not key:
        return "empty"
    if key in training_keys:
        return "copy_of_training"
    return "duplicate" if key in seen else None


def nearest_similarities(texts: list[str], reference: list[str]) -> np.ndarray:
    """Per text, the TF-IDF cosine to the most similar `reference` text (in the reference's vocabulary)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(reference)
    return (vectorizer.transform(texts) @ vectorizer.transform(reference).T).max(axis=1).toarray().ravel()


def nearest_similarity(texts: list[str], reference: list[str]) -> float | None:
    """The median of `nearest_similarities`: how on-topic synthetic texts are, read beside the same figure for
    real held-out texts."""
    return float(np.median(nearest_similarities(texts, reference))) if texts and reference else None


def prefixes(openings: list[list[int]], n: int, share: float, seed: int) -> list[list[int]]:
    """`n` prompts after BOS, from `openings` (the training texts in generator tokens): with probability
    `share` the first 1 to len/2 tokens of a random one, else none. Seeded, so a resumed shard repeats."""
    import random

    rng = random.Random(seed)
    chosen = []
    for _ in range(n):
        if openings and rng.random() < share:
            ids = rng.choice(openings)
            chosen.append(ids[: rng.randint(1, max(1, len(ids) // 2))])
        else:
            chosen.append([])
    return chosen


def sample_shard(sampler, n: int, settings: SynthesizeSettings, seed: int, openings: list[list[int]],
                 label_prompts: list[str] | None = None) -> list[dict]:
    """`n` rows from `sampler` (the seam a test uses to interrupt synthesis between shards).

    With `label_prompts` (a label-conditioned generator) each row is prompted with a random label's prompt
    (seeded), which is cut from its text; the row's `prompted` is that label's index."""
    if not label_prompts:
        return sampler.sample(n, settings, seed, prefixes(openings, n, settings.prefix_share, seed))
    import random

    rng = random.Random(seed)
    asked = [rng.randrange(len(label_prompts)) for _ in range(n)]
    prompt_ids = sampler.tokenizer(label_prompts, add_special_tokens=False)["input_ids"]
    rows = sampler.sample(n, settings, seed, [prompt_ids[k] for k in asked])
    for row, k in zip(rows, asked):
        row["text"], row["prompted"] = row["text"].removeprefix(label_prompts[k]).strip(), k
    return rows


def run_synthesize(settings: SynthesizeSettings, run_dir: str | Path) -> dict:
    from gendistill.compressor.rundir import kill_point, remove_temporaries, resumable, stage_id
    from gendistill.runtime.bundle import write_json_atomic

    started = time.time()
    label_prompts = load_label_prompts(run_dir)  # None unless the generator is label-conditioned
    if settings.prefix_share and label_prompts:
        raise GendistillError("--synthesis-prefix-share cannot start samples of a label-conditioned generator (--generator-conditional); "
                              "use one of the two.")
    out = begin_stage(run_dir, "synthesize", keep_partial=True)
    remove_temporaries(out)  # a shard whose write a kill cut off
    # sampling.json (kept in synthesize/): what the shards were sampled with, the sampler `auto` chose, and
    # once sampling is done its figures. Shards of other settings or another generator (an interrupted
    # --from synthesize with other settings) are not resumed from.
    sampling = out / "sampling.json"
    marker = {"settings": asdict(settings), "generator": stage_id(run_dir, "generator")}
    saved = resumable(sampling, marker)
    if saved is None and sampling.is_file():
        log.info("Discarding %s's shards: they were sampled with other settings or another generator.", out)
        for stale in [*out.glob("shard-*.jsonl"), out / "synthetic.jsonl", sampling]:
            stale.unlink(missing_ok=True)
    if saved is None:
        write_json_atomic(sampling, marker)
        saved = marker
    if "result" in saved and (out / "synthetic.jsonl").is_file():
        # Sampling had finished (synthetic.jsonl written, shards removed) when the run was killed.
        metrics = {**saved["result"], "seconds": time.time() - started}
        finish_stage(run_dir, "synthesize", asdict(settings), metrics)
        return metrics
    train_texts, _ = load_split(run_dir, "train")
    seen = {text_key(t) for t in train_texts}
    kept: list[str] = []
    prompted: list[int] = []  # with a label-conditioned generator: the label each kept text was prompted with
    stats = {"sampled": 0, "tokens": 0, "capped": 0, "empty": 0, "duplicate": 0, "copy_of_training": 0}

    def admit(rows: list[dict]) -> None:
        """Count a shard's samples and keep the texts that are new, non-empty and not training copies."""
        stats["sampled"] += len(rows)
        for row in rows:
            stats["tokens"] += row["tokens"]
            stats["capped"] += row["capped"]
            key = text_key(row["text"])
            reason = drop_reason(key, seen, training_keys)
            if reason:
                stats[reason] += 1
            else:
                seen.add(key)
                kept.append(row["text"])
                if "prompted" in row:
                    prompted.append(row["prompted"])

    training_keys = set(seen)
    shards = sorted(out.glob("shard-*.jsonl"))
    for shard in shards:  # resume: replay finished shards through the same filter
        admit(read_jsonl(shard))
    if shards:
        log.info("Resuming synthesis: %d shards, %d texts kept so far.", len(shards), len(kept))

    sampler = None
    limit = int(settings.count * settings.max_attempts_factor) + settings.shard_size
    bar = progress(total=settings.count, initial=min(len(kept), settings.count), desc="synthesize", unit="text")
    shard_index = len(shards)
    sample_seconds, sampled_now, kept_now, tokens_now = 0.0, 0, 0, 0
    while len(kept) < settings.count and stats["sampled"] < limit:
        if sampler is None:
            sampler = open_sampler(settings, run_dir)
            openings = [ids for ids in sampler.tokenizer(train_texts, add_special_tokens=False)["input_ids"] if ids] if settings.prefix_share else []
            if saved.get("sampler") != sampler.name:  # what `auto` chose, for a resumed run that samples nothing
                saved = {**saved, "sampler": sampler.name}
                write_json_atomic(sampling, saved)
        tick = time.time()
        # The last shard asks only for what is missing (plus a margin for duplicates).
        wanted = min(settings.shard_size, math.ceil((settings.count - len(kept)) * 1.05) + 1)
        kill_point(f"synthesize:sampling:{shard_index}")
        rows = sample_shard(sampler, wanted, settings, settings.seed * 100_003 + shard_index, openings, label_prompts)
        kill_point(f"synthesize:sampled:{shard_index}")
        sample_seconds += time.time() - tick
        sampled_now += len(rows)
        tokens_now += sum(row["tokens"] for row in rows)
        write_jsonl_atomic(out / f"shard-{shard_index:05d}.jsonl", rows)
        kill_point(f"synthesize:written:{shard_index}")
        shard_index += 1
        before = len(kept)
        admit(rows)
        kept_now += len(kept) - before
        bar.update(min(len(kept), settings.count) - min(before, settings.count))
        bar.set_postfix(kept_s=f"{kept_now / sample_seconds:.1f}", tokens_s=f"{tokens_now / sample_seconds:.0f}",
                        dropped=f"{1 - kept_now / max(sampled_now, 1):.0%}")
    bar.close()
    if len(kept) < settings.count:
        log.warning("Kept %d unique texts after sampling %d; the generator repeats itself.", len(kept), stats["sampled"])
    kept, prompted = kept[: settings.count], prompted[: settings.count]
    metrics = {
        "requested": settings.count,
        "kept": len(kept),
        **stats,
        "dropped_share": 1 - len(kept) / stats["sampled"] if stats["sampled"] else None,
        "sampler": sampler.name if sampler is not None else saved.get("sampler"),
        "device": resolve_device(settings.device),
        # This invocation's sampling only (a resumed run replays earlier shards without sampling them).
        "kept_texts_per_second": kept_now / sample_seconds if sample_seconds else None,
        "tokens_per_second": tokens_now / sample_seconds if sample_seconds else None,
        "nearest_training_similarity": {"synthetic": nearest_similarity(kept, train_texts),
                                        "dev": nearest_similarity(load_split(run_dir, "dev")[0], train_texts)},
    }
    synthetic_rows = [{"text": t} for t in kept]
    for row, k in zip(synthetic_rows, prompted):  # prompted is empty unless the generator is label-conditioned
        row["prompted"] = k
    write_jsonl_atomic(out / "synthetic.jsonl", synthetic_rows)
    # Recorded before the shards go, so a run killed from here on finishes without sampling again.
    write_json_atomic(sampling, {**saved, "result": metrics})
    for shard in out.glob("shard-*.jsonl"):
        shard.unlink()
    metrics["seconds"] = time.time() - started
    finish_stage(run_dir, "synthesize", asdict(settings), metrics)
    return metrics


def load_synthetic_rows(run_dir: str | Path) -> list[dict]:
    """synthetic.jsonl's rows: `text`, and `prompted` (the label index asked for) from a label-conditioned generator."""
    from gendistill.compressor.rundir import stage_path

    return read_jsonl(stage_path(run_dir, "synthesize") / "synthetic.jsonl")


def load_synthetic(run_dir: str | Path) -> list[str]:
    return [row["text"] for row in load_synthetic_rows(run_dir)]
