"""Fused Adam against torch's default (foreach) Adam for the generator stage, side by side on one run's split.

The stage (`run_generator`, the pipeline's code: 1 epoch, lr 2e-5, batch 1) is trained in a scratch run directory
beside RUN_DIR, taking turns between the two optimizers for `--rounds` rounds (the machine's load changes through a
run: only turns taken side by side compare), and records the stage's seconds and its dev perplexity. The two differ
in how the update is computed (one fused kernel against a loop of tensor ops), not in the update rule: the dev
perplexity should agree to rounding.

    python benchmarks/generator/fused.py runs/demo27 benchmarks/generator/fused.json --rounds 2
"""

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from pathlib import Path

import gendistill.compressor.generator as generator
from gendistill.compressor.generator import GeneratorSettings, run_generator
from gendistill.compressor.rundir import read_json, stage_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    saved = read_json(stage_path(args.run_dir, "generator") / "settings.json")
    settings = GeneratorSettings.from_saved(saved)
    scratch = args.run_dir.parent / (args.run_dir.name + "-generator-fused")
    fused = generator.fused
    runs = {"foreach": [], "fused": []}
    for round_ in range(args.rounds):
        for name in runs:
            generator.fused = fused if name == "fused" else (lambda device: None)  # None: torch's default (foreach)
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            shutil.copytree(stage_path(args.run_dir, "data"), stage_path(scratch, "data"))
            metrics = run_generator(settings, scratch)
            runs[name].append({"seconds": metrics["seconds"], "dev_perplexity": metrics["dev_perplexity_after"]})
            print(f"round {round_} {name}: {metrics['seconds']:.0f} s, dev perplexity {metrics['dev_perplexity_after']:.3f}", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)
    results = {"run_dir": str(args.run_dir), "settings": dataclasses.asdict(settings), "runs": runs,
               "median_seconds": {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}}
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["median_seconds"]))


if __name__ == "__main__":
    main()
