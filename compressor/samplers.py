"""Sampling backends for the synthesize stage: the same samples, from BOS or BOS + a prefix, two engines.

- `hf`: transformers' `generate` on the fine-tuned generator (fp32 on CPU), the reference.
- `ctranslate2`: the generator converted once to CTranslate2 (int8 on CPU, int8_float16 on CUDA) in
  RUN_DIR/generator/ct2-<compute type>/, sampled with `generate_batch`. CTranslate2 drops finished rows
  from the batch as they hit EOS and runs int8 matrix products, which `generate` does not.
- `auto`: ctranslate2 when it is installed and converts this architecture, else hf (one logged sentence).

Both sample with the same settings: temperature, top-k (0 = full distribution), top-p, max new tokens,
EOS, a seed per shard, and optionally one prefix (generator token ids, [] = none) per row: the row's text is then
the prefix and its continuation. Each returns rows {"text", "tokens" generated, "capped": hit max_new_tokens}.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from gendistill.compressor.rundir import stage_path
from gendistill.compressor.training import resolve_device
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)


class HFSampler:
    """transformers `generate` with the KV cache, batched, prefixes left-padded."""

    name = "hf"

    def __init__(self, model_dir: Path, device: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gendistill.compressor.generator import special_ids

        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
        self.bos, self.eos = special_ids(self.tokenizer)

    def sample(self, n: int, settings, seed: int, prefixes: list[list[int]] | None = None) -> list[dict]:
        import torch
        from transformers import GenerationConfig

        prefixes = prefixes or [[] for _ in range(n)]
        torch.manual_seed(seed)
        # top_k=0 disables top-k; None would mean transformers' default of 50, not the full distribution.
        config = GenerationConfig(
            do_sample=True, temperature=settings.sampling_temperature, top_k=settings.top_k, top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens, eos_token_id=self.eos, pad_token_id=self.eos, bos_token_id=self.bos,
        )
        rows = []
        with torch.inference_mode():
            for start in range(0, n, settings.batch_size):
                batch = [[self.bos, *prefix] for prefix in prefixes[start : start + settings.batch_size]]
                width = max(map(len, batch))
                # Left padding, so every row's next token follows its own prompt.
                prompt = torch.tensor([[self.eos] * (width - len(ids)) + ids for ids in batch], device=self.device)
                mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
                output = self.model.generate(input_ids=prompt, attention_mask=mask, generation_config=config)[:, width:]
                for ids, prefix in zip(output.tolist(), batch):
                    rows.append(_row(self.tokenizer, ids, self.eos, settings.max_new_tokens, prefix[1:]))
        return rows


class CT2Sampler:
    """CTranslate2 `generate_batch` on the converted generator.

    On CPU a shard is split between `workers` generators of one thread each (one per torch thread), run side by
    side, instead of one generator whose matrix products use every thread, whose every token waits for the slower
    thread: on a 2-core shared VM 28.4 against 17.0 kept texts/s (`gendistill bench-synthesize RUN_DIR`, its
    ctranslate2-one-worker row; benchmarks/synthesis/bench-synthesize-ct2-workers.json). The samples depend on the
    shard's seed and the number of workers, not on timing.
    """

    name = "ctranslate2"

    def __init__(self, model_dir: Path, ct2_dir: Path, device: str, compute_type: str, workers: int | None = None):
        import torch
        from transformers import AutoTokenizer

        from gendistill.compressor.generator import special_ids

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.bos, self.eos = special_ids(self.tokenizer)
        if device != "cpu":
            self.workers, threads = 1, 0
        elif workers is None:
            self.workers, threads = torch.get_num_threads(), 1
        else:  # workers=1 with every thread: the layout before workers, for bench-synthesize's comparison
            self.workers, threads = workers, max(1, torch.get_num_threads() // workers)
        self.options = {"model_path": str(ct2_dir), "device": device, "compute_type": compute_type, "intra_threads": threads}
        self.start = [self.tokenizer.convert_ids_to_tokens(self.bos)]
        self.end = self.tokenizer.convert_ids_to_tokens(self.eos)
        self._try(self._load())  # fail here, where `auto` can still fall back, rather than mid-synthesis

    def _load(self):
        import ctranslate2

        from gendistill.compressor.training import torch_threads

        # CTranslate2 sets the calling thread's OpenMP thread count to its intra_threads, which torch reads too:
        # without torch_threads, every later torch pass of the run (annotation, distillation) would use one thread.
        try:
            with torch_threads():
                return ctranslate2.Generator(**self.options)
        except (RuntimeError, ValueError) as exc:  # e.g. a tokenizer without the special tokens CTranslate2 expects
            raise GendistillError(f"CTranslate2 cannot load the converted generator ({str(exc).splitlines()[0]}); use --sampler hf.") from None

    def _try(self, generator):
        """One greedy token (greedy draws no random number). CTranslate2 loads a device's libraries only when it first
        generates: on a GPU whose CUDA is not the one its wheel was built for (libcublas.so.12 on a CUDA 13 machine,
        seen on an H200), loading succeeds and the first generate_batch raises."""
        try:
            generator.generate_batch([self.start], max_length=1)
        except RuntimeError as exc:
            raise GendistillError(f"CTranslate2 cannot run on {self.options['device']} here ({str(exc).splitlines()[0]}); "
                                  "use --sampler hf.") from None

    def sample(self, n: int, settings, seed: int, prefixes: list[list[int]] | None = None) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        import ctranslate2

        prefixes = prefixes or [[] for _ in range(n)]
        prompts = [self.start + self.tokenizer.convert_ids_to_tokens(prefix) for prefix in prefixes]
        size = -(-n // self.workers)
        parts = [prompts[start:start + size] for start in range(0, n, size)]
        # A CTranslate2 sampling thread seeds its random generator from the global seed when it first samples
        # (CTranslate2 issue #1757), so `set_random_seed` alone does not repeat a sample. Each worker is a new
        # generator, seeded, then made to draw once so that its thread takes this seed before the next worker's
        # is set (the last one draws first inside generate_batch; one worker samples exactly as before workers).
        generators = []
        for index in range(len(parts)):
            ctranslate2.set_random_seed((seed + 7_919 * index) % 2**32)
            generators.append(self._load())
            if index < len(parts) - 1:
                generators[-1].generate_batch([self.start], max_length=1, sampling_topk=0)  # a draw: greedy (the default) draws none

        def run(generator, part):
            return generator.generate_batch(
                part, max_batch_size=-(-settings.batch_size // len(parts)), sampling_topk=settings.top_k, sampling_topp=settings.top_p,
                sampling_temperature=settings.sampling_temperature, max_length=settings.max_new_tokens, end_token=self.end,
                include_prompt_in_result=False,
            )

        with ThreadPoolExecutor(len(parts)) as pool:  # generate_batch releases the GIL
            results = [result for part in pool.map(run, generators, parts) for result in part]
        return [_row(self.tokenizer, result.sequences_ids[0], self.eos, settings.max_new_tokens, prefix)
                for result, prefix in zip(results, prefixes)]


def _row(tokenizer, ids: list[int], eos: int, max_new_tokens: int, prefix: list[int] = ()) -> dict:
    """A sample's row: its prefix and generated tokens up to EOS, decoded; `tokens` counts the generated ones."""
    ended = eos in ids
    length = ids.index(eos) if ended else len(ids)
    text = tokenizer.decode([*prefix, *ids[:length]], skip_special_tokens=True).strip()
    return {"text": text, "tokens": length, "capped": not ended and length >= max_new_tokens}


def compute_type(device: str) -> str:
    return "int8" if device == "cpu" else "int8_float16"


def ct2_available() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


def convert_ct2(model_dir: Path, ct2_dir: Path, quantization: str) -> Path:
    """Convert the Hugging Face generator in `model_dir` to CTranslate2 at `ct2_dir`, once.

    Written to `<ct2_dir>.partial` and renamed into place, so a conversion killed midway leaves nothing a
    re-run mistakes for finished. Raises GendistillError when the architecture is not supported.
    """
    if (ct2_dir / "model.bin").is_file():
        return ct2_dir
    from ctranslate2.converters import TransformersConverter

    partial = ct2_dir.with_name(ct2_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log.info("Converting the generator to CTranslate2 (%s) once, into %s", quantization, ct2_dir)
    try:
        TransformersConverter(str(model_dir)).convert(str(partial), quantization=quantization, force=True)
    except Exception as exc:  # the converter raises ValueError/NotImplementedError/KeyError for unsupported models
        shutil.rmtree(partial, ignore_errors=True)
        raise GendistillError(f"CTranslate2 cannot convert this generator ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unsupported'}); "
                              "use --sampler hf.") from None
    from gendistill.compressor.rundir import kill_point

    kill_point("ct2:converted")
    os.replace(partial, ct2_dir)
    return ct2_dir


def open_sampler(settings, run_dir: str | Path, workers: int | None = None):
    """The sampler `settings.sampler` asks for, on `settings.device`; `auto` falls back to hf with one sentence.
    `workers`: CTranslate2 generators side by side (default: one per torch thread, each with one thread)."""
    model_dir = stage_path(run_dir, "generator") / "model"
    device = resolve_device(settings.device)
    wanted = settings.sampler
    if wanted in ("auto", "ctranslate2"):
        if not ct2_available():
            if wanted == "ctranslate2":
                raise GendistillError('--sampler ctranslate2 needs the ctranslate2 package: pip install "gendistill[compress]".')
            log.info("ctranslate2 is not installed; sampling with transformers (--sampler hf), which is several times slower.")
        else:
            kind = compute_type(device)
            try:
                ct2_dir = convert_ct2(model_dir, stage_path(run_dir, "generator") / f"ct2-{kind}", kind)
                return CT2Sampler(model_dir, ct2_dir, device, kind, workers)
            except GendistillError as exc:
                if wanted == "ctranslate2":
                    raise
                log.info("%s Sampling with transformers instead.", str(exc).split(";")[0] + ".")
    return HFSampler(model_dir, device)
