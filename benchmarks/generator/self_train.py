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
import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gendistill.compressor import generator
from gendistill.compressor.generator import GeneratorSettings, run_generator
from gendistill.compressor.rundir import read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic


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
    logits = logits - logits.max(1, keepdims=True)
    confidence = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).max(1)
    chosen = [synthetic[i] for i in np.sort(np.argsort(-confidence, kind="stable")[: args.texts])]
    print(f"{len(chosen)} synthetic texts, teacher confidence {confidence[np.argsort(-confidence)[args.texts - 1]]:.3f} and up")

    real_load_split = generator.load_split

    def with_chosen(run_dir, split):  # the generator stage reads its training texts with load_split("train")
        texts, labels = real_load_split(run_dir, split)
        return (texts + chosen, labels + [0] * len(chosen)) if split == "train" else (texts, labels)

    generator.load_split = with_chosen
    saved = read_json(stage_path(args.run_dir, "generator") / "settings.json")
    fields = {f.name for f in dataclasses.fields(GeneratorSettings)}
    settings = GeneratorSettings(**{**{k: v for k, v in saved.items() if k in fields}, "batch_size": 16, "lr": 1e-4})
    shutil.rmtree(args.out / "generator")
    metrics = run_generator(settings, args.out)
    print(f"dev perplexity {metrics['dev_perplexity_before']:.1f} -> {metrics['dev_perplexity_after']:.1f}")


if __name__ == "__main__":
    main()
