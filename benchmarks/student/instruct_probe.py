"""Probe: synthetic texts from the *pretrained* instruct generator, prompted with a few training texts, beside the
fine-tuned generator's.

The fine-tuned SmolLM2-135M samples at temperature 1 are often word salad; the same model before fine-tuning, given
a list "Sentences from movie reviews:" of 3 random training texts and an open "-", continues the list with fluent
sentences in a wider vocabulary (few-shot generation, as in ZeroGen-style data synthesis; one prompt yields several
texts, about 3 kept on the demo's split, so its cost is shared). This samples COUNT such texts (CTranslate2 int8, temperature 1, the full distribution, 160 new tokens
per prompt), drops items under 3 words, empty ones and copies of training or RUN's synthetic texts, labels them with
RUN's teacher (torch fp32, calibrated as the annotate stage's) and writes two runs, RUN hard-linked, whose synthetic pool is:

- OUT-mix:  RUN's synthetic texts but the last COUNT, + the COUNT prompted ones (as many texts as RUN: a swap);
- OUT-add:  all of RUN's synthetic texts + the COUNT prompted ones.

    python benchmarks/student/instruct_probe.py runs/demo27 runs/demo27-instruct --count 3000
    python benchmarks/student/ablate.py runs/demo27-instruct-mix benchmarks/student/results-instruct.json --seeds 3 \\
      --variant kim-cnn:teacher:synthetic
    python benchmarks/student/ablate.py runs/demo27-instruct-add benchmarks/student/results-instruct-add.json --seeds 3 \\
      --variant kim-cnn:teacher:synthetic:keep_confident=0

Resumes: the prompted texts and their logits are kept in OUT-texts/ once made.
"""

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from gendistill.compressor.annotate import CONFIDENT, load_annotations
from gendistill.compressor.assets import cache_dir, generator_dir
from gendistill.compressor.data import text_key
from gendistill.compressor.rundir import load_split, write_jsonl_atomic
from gendistill.compressor.samplers import convert_ct2
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.training import progress
from gendistill.runtime.classifier import softmax
from probe_run import replace_synthetic_pool  # benchmarks/student/probe_run.py

LENGTH = 160  # new tokens per prompt: room for several list items
HEADER = "Sentences from movie reviews:\n"


def list_items(generated: str, capped: bool) -> list[str]:
    """The texts the model wrote as the list's next items: the first line (it continues the prompt's open "-"), then
    every "- " line up to the first line that is not one (the list ended); the last item is dropped when the sample
    hit its length limit (cut off mid-text). Items under 3 words are dropped."""
    lines = generated.split("\n")
    items = [lines[0]]
    for line in lines[1:]:
        if not line.startswith("- "):
            capped = False  # the list ended before the limit: its last item is whole
            break
        items.append(line[2:])
    if capped:
        items = items[:-1]
    return [item.strip().strip('"').strip() for item in items if len(item.split()) >= 3]


def sample(count: int, train_texts: list[str], exclude: set[str], seed: int, batch: int = 256) -> tuple[list[str], dict]:
    import ctranslate2
    import torch
    from transformers import AutoTokenizer

    model_dir = generator_dir()
    ct2_dir = convert_ct2(model_dir, cache_dir() / "smollm2-135m-instruct-ct2-int8", "int8")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(seed)
    kept, seen, sampled, started = [], set(exclude), 0, time.time()
    bar = progress(total=count, desc="prompted synthesis", unit="text")
    shard = 0
    while len(kept) < count and sampled < 4 * count:
        prompts = []
        for _ in range(batch):
            prompt = HEADER + "".join(f"- {t}\n" for t in rng.sample(train_texts, 3)) + "-"
            prompts.append(tokenizer.convert_ids_to_tokens(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        ctranslate2.set_random_seed(seed * 100_003 + shard)
        generator = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type="int8", intra_threads=torch.get_num_threads())
        # 32 rows at a time: CTranslate2's cost per step grows with its cache, and 256 rows of 250-330 tokens took seconds a step.
        results = generator.generate_batch(prompts, max_batch_size=32, sampling_topk=0, sampling_topp=1.0, sampling_temperature=1.0,
                                           max_length=LENGTH, include_prompt_in_result=False)
        shard += 1
        for result in results:
            ids = result.sequences_ids[0]
            for text in list_items(tokenizer.decode(ids, skip_special_tokens=True), capped=len(ids) >= LENGTH):
                sampled += 1
                key = text_key(text)
                if key and key not in seen:
                    seen.add(key)
                    kept.append(text)
        bar.update(min(len(kept), count) - bar.n)
    bar.close()
    seconds = time.time() - started
    return kept[:count], {"sampled": sampled, "kept": min(len(kept), count), "seconds": seconds, "kept_texts_per_second": min(len(kept), count) / seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from gendistill.compressor.teacher import load_teacher, teacher_logits, teacher_max_length

    train_texts, _ = load_split(args.run_dir, "train")
    synthetic = load_synthetic(args.run_dir)
    store = args.out.with_name(args.out.name + "-texts")
    store.mkdir(parents=True, exist_ok=True)
    if not (store / "logits.npy").is_file():
        texts, stats = sample(args.count, train_texts, {text_key(t) for t in train_texts + synthetic}, args.seed)
        model, tokenizer = load_teacher(args.run_dir)
        logits = teacher_logits(model, tokenizer, texts, teacher_max_length(args.run_dir), 64, desc="teacher on prompted texts")
        write_jsonl_atomic(store / "texts.jsonl", [{"text": t} for t in texts])
        (store / "sampling.json").write_text(json.dumps(stats, indent=1))
        np.save(store / "logits.npy", logits)
    texts = [json.loads(line)["text"] for line in (store / "texts.jsonl").open()]
    logits = np.load(store / "logits.npy")
    stats = json.loads((store / "sampling.json").read_text())
    first = load_annotations(args.run_dir, "synthetic")
    probabilities = softmax(logits)
    print(f"{len(texts)} prompted texts ({stats['kept_texts_per_second']:.1f} kept texts/s, {stats['sampled']} sampled); "
          f"teacher >= {CONFIDENT} sure of {(probabilities.max(1) >= CONFIDENT).mean():.1%}, label counts {np.bincount(probabilities.argmax(1)).tolist()}")
    for text in texts[:: max(len(texts) // 8, 1)][:8]:
        print("  ", text)
    n = len(texts)
    kept = len(synthetic) - n
    replace_synthetic_pool(args.run_dir, args.out.with_name(args.out.name + "-mix"), synthetic[:kept] + texts, np.concatenate([first[:kept], logits]))
    replace_synthetic_pool(args.run_dir, args.out.with_name(args.out.name + "-add"), synthetic + texts, np.concatenate([first, logits]))


if __name__ == "__main__":
    main()
