"""Generator adaptation on small data: which fine-tuning recipe gives the lowest dev perplexity, and at what cost.

The generator stage (paper: 1 epoch, lr 2e-5, batch 1) sees only the labeled texts, 200 in the demo. This
trains the run's own generator stage (`run_generator`, the pipeline's code) with each recipe on the run's
split, in a scratch run directory beside it, and records the dev perplexity after every epoch and the
seconds. Resumes: a recipe already in the results file is not trained again.

    python benchmarks/generator/adapt.py runs/demo benchmarks/generator/adapt.json \\
        --recipe epochs=1,lr=2e-5,batch_size=1 --recipe epochs=5,lr=1e-4,batch_size=16
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from gendistill.compressor.generator import GeneratorSettings, run_generator
from gendistill.compressor.rundir import read_json, stage_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--recipe", action="append", required=True, help="GeneratorSettings fields, e.g. epochs=5,lr=1e-4,batch_size=16")
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"run_dir": str(args.run_dir), "recipes": {}}
    base = read_json(stage_path(args.run_dir, "generator") / "settings.json")
    base = GeneratorSettings.from_saved(base)
    scratch = args.run_dir.parent / (args.run_dir.name + "-generator-adapt")
    for recipe in args.recipe:
        if recipe in results["recipes"]:
            continue
        values = dict(pair.split("=") for pair in recipe.split(","))
        settings = dataclasses.replace(base, **{k: type(getattr(base, k))(v) for k, v in values.items()})
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        os.symlink((args.run_dir / "data").resolve(), scratch / "data")
        shutil.copy(args.run_dir / "run.json", scratch / "run.json")
        metrics = run_generator(settings, scratch)
        results["recipes"][recipe] = {"settings": dataclasses.asdict(settings), **{k: metrics[k] for k in
                                      ("dev_perplexity_before", "dev_perplexity_after", "best_epoch", "history", "seconds")}}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))
        print(f"{recipe}: dev perplexity {metrics['dev_perplexity_before']:.1f} -> {metrics['dev_perplexity_after']:.1f} "
              f"(epoch {metrics['best_epoch']}) in {metrics['seconds']:.0f} s", file=sys.stderr, flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    for recipe, entry in results["recipes"].items():
        curve = " ".join(f"{h['dev_perplexity']:.1f}" for h in entry["history"])
        print(f"{recipe:45s} best {entry['dev_perplexity_after']:.1f} at epoch {entry['best_epoch']}, {entry['seconds']:.0f} s; per epoch: {curve}")


if __name__ == "__main__":
    main()
