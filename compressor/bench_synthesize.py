"""`gendistill bench-synthesize RUN_DIR`: every available sampling backend side by side on the run's own
fine-tuned generator and sampling settings, for speed and for the quality of what each one samples.

Each backend samples in a fresh child process (so peak memory is its own), in shards as the synthesize
stage does, from the same seeds. Speed: kept texts/s (unique, non-empty, not copies of training texts),
generated tokens/s, seconds, peak RSS. Quality, scored in the parent:
- mean per-token negative log-likelihood of the samples under the fp32 transformers generator (the same
  distribution sampled faithfully gives the same NLL; a broken sampler drifts);
- distinct-1 / distinct-2 (unique word uni/bigrams over all words) of the kept texts;
- empty, duplicate and training-copy rates, the share that hit max_new_tokens;
- the length distribution in words (mean, median, 90th percentile) against the real training texts.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import statistics
import time
from collections import Counter
from pathlib import Path

from gendistill.compressor import rundir
from gendistill.compressor.samplers import ct2_available
from gendistill.compressor.data import text_key
from gendistill.compressor.synthesize import SynthesizeSettings, drop_reason
from gendistill.runtime.errors import GendistillError

BACKENDS = ("hf", "ctranslate2", "ctranslate2-one-worker")
"""ctranslate2-one-worker: one CTranslate2 generator using every thread, the layout before the stage split each shard
between one-thread generators side by side (`samplers.CT2Sampler`)."""


def run_settings(run_dir: Path) -> SynthesizeSettings:
    """The run's own sampling settings (its synthesize stage's), or the defaults if it has none yet."""
    path = rundir.stage_path(run_dir, "synthesize") / "settings.json"
    if not path.is_file():
        return SynthesizeSettings()
    return SynthesizeSettings.from_saved(rundir.read_json(path))


def bench_synthesize(run_dir: str | Path, count: int = 512, backends: list[str] | None = None, batch_size: int | None = None) -> dict:
    """{"count", "settings", "backends": {name: figures}}; see the module docstring for the figures."""
    run_dir = Path(run_dir)
    if not rundir.is_complete(run_dir, "generator"):
        raise GendistillError(f"{run_dir} has no fine-tuned generator ({rundir.stage_path(run_dir, 'generator') / 'metrics.json'} is missing); "
                              "run `gendistill compress` into it first (with --synthetic above 0).")
    if count < 1:
        raise GendistillError(f"--count must be at least 1, not {count}.")
    settings = run_settings(run_dir)
    if batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=batch_size)
    available = [b for b in BACKENDS if b == "hf" or ct2_available()]
    backends = list(backends or available)
    for backend in backends:
        if backend not in BACKENDS:
            raise GendistillError(f"--backends must name {', '.join(BACKENDS)}, not {backend!r}.")
        if backend not in available:
            raise GendistillError(f'The {backend} backend is not installed: pip install "gendistill[compress]".')
    train_texts = rundir.load_split(run_dir, "train")[0]
    results = {}
    for backend in backends:
        measured = _in_child(run_dir, settings, backend, count)
        figures = {**measured["speed"], **quality(measured["rows"], train_texts)}
        # Kept texts/s is the rate that matters: a dropped sample costs as much as a kept one.
        figures["kept_texts_per_second"] = figures["kept"] / figures["seconds"]
        results[backend] = figures
    scorer = _Scorer(run_dir)
    for backend in backends:
        results[backend]["nll_per_token"] = scorer.nll_per_token(results[backend].pop("texts"))
    return {"run_dir": str(run_dir), "count": count, "settings": dataclasses.asdict(settings),
            "train_length_words": _lengths(train_texts), "backends": results}


def _in_child(run_dir: Path, settings: SynthesizeSettings, backend: str, count: int) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_sample_here, (str(run_dir), settings, backend, count))


def _sample_here(run_dir: str, settings: SynthesizeSettings, backend: str, count: int) -> dict:
    """In the child: open the sampler and sample `count` texts in shards, timed like the stage."""
    import resource

    import transformers

    from gendistill.compressor.samplers import open_sampler

    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    one_worker = backend == "ctranslate2-one-worker"
    sampler = open_sampler(dataclasses.replace(settings, sampler="ctranslate2" if one_worker else backend), run_dir, workers=1 if one_worker else None)
    load_seconds = time.perf_counter() - started
    rows, seconds = [], 0.0
    for index in range(math.ceil(count / settings.shard_size)):
        n = min(settings.shard_size, count - len(rows))
        tick = time.perf_counter()
        rows += sampler.sample(n, settings, 7_919 + index)
        seconds += time.perf_counter() - tick
    tokens = sum(r["tokens"] for r in rows)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"rows": rows, "speed": {"sampler": backend, "batch_size": settings.batch_size, "sampled": len(rows),
                                    "seconds": seconds, "load_seconds": load_seconds, "texts_per_second": len(rows) / seconds,
                                    "tokens_per_second": tokens / seconds, "peak_rss_mib": peak_mib}}


def quality(rows: list[dict], train_texts: list[str]) -> dict:
    """Drop rates as the synthesize stage counts them, and diversity and length of what is kept."""
    training = {text_key(t) for t in train_texts}
    seen, kept = set(), []
    dropped = Counter()
    for row in rows:
        key = text_key(row["text"])
        reason = drop_reason(key, seen, training)
        if reason:
            dropped[reason] += 1
        else:
            seen.add(key)
            kept.append(row["text"])
    words = [t.lower().split() for t in kept]
    unigrams = [w for ws in words for w in ws]
    bigrams = [pair for ws in words for pair in zip(ws, ws[1:])]
    n = max(len(rows), 1)
    return {
        "kept": len(kept), "empty_rate": dropped["empty"] / n, "duplicate_rate": dropped["duplicate"] / n,
        "training_copy_rate": dropped["copy_of_training"] / n,
        "capped_rate": sum(r["capped"] for r in rows) / n,
        "distinct_1": len(set(unigrams)) / max(len(unigrams), 1), "distinct_2": len(set(bigrams)) / max(len(bigrams), 1),
        "length_words": _lengths(kept), "texts": kept,
    }


def _lengths(texts: list[str]) -> dict:
    counts = sorted(len(t.split()) for t in texts) or [0]
    return {"mean": statistics.fmean(counts), "median": statistics.median(counts), "p90": counts[int(0.9 * (len(counts) - 1))]}


class _Scorer:
    """The fine-tuned generator in fp32 transformers: the reference distribution the samples are scored under."""

    def __init__(self, run_dir: Path):
        import transformers

        from gendistill.compressor.generator import load_generator

        transformers.utils.logging.disable_progress_bar()
        self.model, self.tokenizer = load_generator(run_dir)

    def nll_per_token(self, texts: list[str], batch_size: int = 32) -> float | None:
        from gendistill.compressor.generator import frame, perplexity, special_ids

        if not texts:
            return None
        _, eos = special_ids(self.tokenizer)
        # The generator stage's own dev-perplexity loop: perplexity is exp(mean NLL per token).
        return math.log(perplexity(self.model, frame(self.tokenizer, texts, max_length=10_000), eos, batch_size))


def format_table(result: dict) -> str:
    from gendistill.runtime.formatting import table

    names = list(result["backends"])
    figures = result["backends"]
    train = result["train_length_words"]

    def length(d):
        return f"{d['mean']:.1f} / {d['median']:.0f} / {d['p90']:.0f}"

    rows = [("", *names)]
    for label, key, fmt in (
        ("kept texts/s", "kept_texts_per_second", "{:.1f}"), ("sampled texts/s", "texts_per_second", "{:.1f}"),
        ("generated tokens/s", "tokens_per_second", "{:.0f}"), ("sampling seconds", "seconds", "{:.1f}"),
        ("model load seconds", "load_seconds", "{:.1f}"), ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
        ("NLL per token (fp32 generator)", "nll_per_token", "{:.3f}"), ("distinct-1", "distinct_1", "{:.3f}"),
        ("distinct-2", "distinct_2", "{:.3f}"), ("empty", "empty_rate", "{:.1%}"), ("duplicates", "duplicate_rate", "{:.1%}"),
        ("copies of training texts", "training_copy_rate", "{:.1%}"), ("hit max new tokens", "capped_rate", "{:.1%}"),
    ):
        rows.append((label, *(fmt.format(figures[n][key]) if figures[n].get(key) is not None else "-" for n in names)))
    rows.append(("words mean / median / p90", *(length(figures[n]["length_words"]) for n in names)))
    s = result["settings"]
    head = (f"{result['count']} texts per backend from {result['run_dir']}'s generator; temperature {s['sampling_temperature']}, "
            f"top-k {s['top_k']}, top-p {s['top_p']}, max new tokens {s['max_new_tokens']}, batch {s['batch_size']}; "
            f"training texts: {length(train)} words")
    return head + "\n" + table(rows)
