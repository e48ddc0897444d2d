"""Longer synthetic texts for a long-text dataset: the generator fine-tuned on longer cuts of the labeled texts and
sampling longer texts, on one benchmark seed's run (its split and teacher).

    python benchmarks/student/long_synthesis.py runs/benchmark/bbc-news/seed0 runs/bbc-long128 \\
        --generator-max-length 128 --max-new-tokens 112 --count 3000

OUT is RUN hard-linked; the pipeline then re-makes OUT's generator (texts cut to --generator-max-length tokens),
synthesize (--count texts of at most --max-new-tokens), annotate and distill stages, with every other setting as the
benchmark made RUN. `ablate.py OUT ...` then trains students on OUT's texts beside RUN's own. Resumes: finished
stages of OUT are reused.
"""

import argparse
from dataclasses import replace
from pathlib import Path

from gendistill.compressor.benchmark.run import BenchmarkSettings, compress_settings
from gendistill.compressor.pipeline import run_compress
from gendistill.compressor.rundir import read_json, stage_path
from probe_run import copy_run  # benchmarks/student/probe_run.py


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path, help="a finished benchmark seed's run: runs/benchmark/DATASET/seedN")
    parser.add_argument("out", type=Path)
    parser.add_argument("--generator-max-length", type=int, required=True)
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--synthetic-counts", default="0,20000", help="the benchmark's --synthetic-counts that made RUN")
    args = parser.parse_args()
    dataset, seed = args.run_dir.parent.name, int(args.run_dir.name.removeprefix("seed"))
    bench = BenchmarkSettings(datasets=[dataset], seeds=[seed], synthetic_counts=[int(c) for c in args.synthetic_counts.split(",")])
    settings = compress_settings(bench, dataset, seed)
    made = read_json(stage_path(args.run_dir, "data") / "settings.json")
    if made.get("fingerprint") != settings.of("data")["fingerprint"]:
        raise SystemExit(f"{args.run_dir} was not made by the benchmark with these settings (its data stage differs).")
    settings = replace(settings, generator=replace(settings.generator, max_length=args.generator_max_length),
                       synthesize=replace(settings.synthesize, max_new_tokens=args.max_new_tokens, count=args.count))
    copy_run(args.run_dir, args.out)
    run_compress(settings, args.out, redo_changed=True)


if __name__ == "__main__":
    main()
