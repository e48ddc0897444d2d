"""One pool of synthetic texts from two generators, for the student ablations.

    python benchmarks/student/mix_pools.py runs/benchmark/rotten-tomatoes/seed0 runs/gemma20k/seed0 runs/mix-smol20k-gemma20k/seed0 --first 20000

FIRST and SECOND are finished runs on the same split and teacher (SECOND made with another `--generator`). OUT is
FIRST hard-linked, with its synthetic pool replaced by FIRST's first N texts (--first; all when unset) followed by
SECOND's texts that are not among them, each with the teacher logits its own run gave it. `ablate.py OUT ...` then
trains students on the mixed pool (`count=N` keeps its first N).
"""

import argparse
from pathlib import Path

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.rundir import read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from probe_run import join_synthetic_pools  # benchmarks/student/probe_run.py


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--first", dest="first_count", type=int, default=None, help="Texts of FIRST's pool to keep, from its start.")
    args = parser.parse_args()
    for stage in ("data", "teacher"):  # the same split and the same teacher, or the logits do not belong together
        if read_json(stage_path(args.first, stage) / "metrics.json")["stage_id"] != read_json(stage_path(args.second, stage) / "metrics.json")["stage_id"]:
            raise SystemExit(f"{args.first} and {args.second} differ in their {stage} stage; mix pools of one split and one teacher.")
    first_texts, first_logits = load_synthetic(args.first), load_annotations(args.first, "synthetic")
    join_synthetic_pools(args.first, args.out, (first_texts[: args.first_count], first_logits[: args.first_count]),
                         (load_synthetic(args.second), load_annotations(args.second, "synthetic")))


if __name__ == "__main__":
    main()
