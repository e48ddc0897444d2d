"""A run whose synthetic pool is the first N texts of another run's, with their teacher logits.

    python benchmarks/student/sub_pool.py runs/demo27-80k runs/demo27-80k-p20 --first 20000

A shard's seed depends only on its index, so the first N texts of a pool of 80,000 are, but for its last shard
(which asks only for what is missing), the pool a run asking for N would have sampled: one sampling and one
annotation give the pool-size comparison on the same texts.
OUT is RUN hard-linked with its pool cut; `ablate.py OUT ...` then keeps the surest of those N.
"""

import argparse
from pathlib import Path

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.synthesize import load_synthetic
from probe_run import replace_synthetic_pool  # benchmarks/student/probe_run.py


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--first", type=int, required=True)
    args = parser.parse_args()
    texts, logits = load_synthetic(args.run_dir), load_annotations(args.run_dir, "synthetic")
    if args.first > len(texts):
        raise SystemExit(f"{args.run_dir} has {len(texts)} synthetic texts, fewer than --first {args.first}.")
    replace_synthetic_pool(args.run_dir, args.out, texts[: args.first], logits[: args.first])
    print(f"{args.out}: the first {args.first} of {len(texts)} synthetic texts")


if __name__ == "__main__":
    main()
