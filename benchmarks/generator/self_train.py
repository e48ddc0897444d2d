"""A second-round generator: fine-tuned on the labeled texts plus its own synthetic texts the teacher is surest of.

    python benchmarks/generator/self_train.py runs/demo runs/demo-selfgen --texts 2000
    gendistill demo --out runs/demo-selfgen --from synthesize --no-export --generator-batch-size 16 --generator-lr 1e-4
    python benchmarks/student/ablate.py runs/demo-selfgen benchmarks/generator/self-train.json --seeds 3 \\
        --variant bigru:teacher:synthetic

A probe, not a pipeline choice. Fine-tuned on 2,000 real unlabeled texts besides the labeled ones, the generator wrote
texts that taught the student more (RESULTS.md, "Unlabeled texts for the generator"). Does it need *real* text, or do
its own samples do, once the teacher has picked those it is surest of (GAL's filter)? This copies RUN_DIR's data,
teacher and generator stage (hard links) into OUT, then re-makes OUT's generator stage with the stage's own code from
the pretrained model, on the labeled texts plus the `--texts` synthetic texts of RUN_DIR the teacher gives the highest
probability (batches of 16, lr 1e-4, as with the real texts). The demo command above then samples, annotates and
distils from that generator.
"""

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gendistill.compressor import generator
from gendistill.compressor.distill import most_confident
from gendistill.compressor.generator import GeneratorSettings, run_generator
from gendistill.compressor.rundir import read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from gendistill.runtime.classifier import softmax


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--texts", type=int, default=2000)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a new directory.")
    args.out.mkdir(parents=True)
    shutil.copy2(args.run_dir / "run.json", args.out / "run.json")
    for stage in ("data", "teacher", "generator", "synthesize", "annotate"):
        subprocess.run(["cp", "-al", str(args.run_dir / stage), str(args.out / stage)], check=True)
    synthetic = load_synthetic(args.run_dir)
    logits = np.load(stage_path(args.run_dir, "annotate") / "synthetic.npy")
    kept = most_confident(logits, args.texts)  # the distill stage's own pick of the texts the teacher is surest of
    chosen = [synthetic[i] for i in kept]
    print(f"{len(chosen)} synthetic texts, teacher confidence {softmax(logits[kept]).max(1).min():.3f} and up")

    real_load_split = generator.load_split

    def with_chosen(run_dir, split):  # the generator stage reads its training texts with load_split("train")
        texts, labels = real_load_split(run_dir, split)
        return (texts + chosen, labels + [0] * len(chosen)) if split == "train" else (texts, labels)

    generator.load_split = with_chosen
    saved = read_json(stage_path(args.run_dir, "generator") / "settings.json")
    settings = GeneratorSettings.from_saved(saved, batch_size=16, lr=1e-4)
    shutil.rmtree(args.out / "generator")
    metrics = run_generator(settings, args.out)
    print(f"dev perplexity {metrics['dev_perplexity_before']:.1f} -> {metrics['dev_perplexity_after']:.1f}")


if __name__ == "__main__":
    main()
