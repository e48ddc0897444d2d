"""Does CTranslate2's batch size change what it samples, or was a 512-text difference seed-to-seed noise?

Samples 512 texts (2 shards of 256) from a run's fine-tuned generator for every combination of compute type
(int8, float32), batch size (64, 256) and seed set (0, 1), with the synthesize stage's settings (full
distribution, temperature 1, 48 new tokens), and scores each set as `gendistill bench-synthesize` does
(NLL per token under the fp32 transformers generator, distinct-2, words per text).

    python benchmarks/synthesis/ct2_batch_noise.py runs/benchmark/rotten-tomatoes/seed0 > benchmarks/synthesis/ct2-batch-noise.json

Heavy (about 5 minutes on 2 cores): run nothing else beside it.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import ctranslate2
import torch
from transformers import AutoTokenizer

from gendistill.compressor import rundir
from gendistill.compressor.bench_synthesize import _Scorer, quality
from gendistill.compressor.generator import special_ids
from gendistill.compressor.samplers import _row, convert_ct2

run = Path(sys.argv[1])
model_dir = rundir.stage_path(run, "generator") / "model"
tokenizer = AutoTokenizer.from_pretrained(model_dir)
bos, eos = special_ids(tokenizer)
start, end = [tokenizer.convert_ids_to_tokens(bos)], tokenizer.convert_ids_to_tokens(eos)
train_texts = rundir.load_split(run, "train")[0]
scorer = _Scorer(run)
results = {}
with tempfile.TemporaryDirectory() as tmp:
    for compute_type in ("int8", "float32"):
        ct2_dir = convert_ct2(model_dir, Path(tmp) / f"ct2-{compute_type}", compute_type)
        for batch in (64, 256):
            for seed_set in (0, 1):
                rows, tick = [], time.perf_counter()
                for shard in range(2):
                    ctranslate2.set_random_seed(1000 * seed_set + shard)
                    generator = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=torch.get_num_threads())
                    for result in generator.generate_batch([start] * 256, max_batch_size=batch, sampling_topk=0, sampling_topp=1.0,
                                                           sampling_temperature=1.0, max_length=48, end_token=end, include_prompt_in_result=False):
                        rows.append(_row(tokenizer, result.sequences_ids[0], eos, 48))
                seconds = time.perf_counter() - tick
                figures = quality(rows, train_texts)
                nll = scorer.nll_per_token(figures.pop("texts"))
                key = f"{compute_type}/batch{batch}/seeds{seed_set}"
                results[key] = {"texts_per_second": len(rows) / seconds, "nll_per_token": nll, "distinct_2": figures["distinct_2"],
                                "words_mean": figures["length_words"]["mean"], "capped_rate": figures["capped_rate"]}
                print(key, {k: round(v, 3) for k, v in results[key].items()}, file=sys.stderr, flush=True)
json.dump({"run_dir": str(run), "texts_per_set": 512, "results": results}, sys.stdout, indent=1)
