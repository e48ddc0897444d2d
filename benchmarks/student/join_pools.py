"""A larger pool of synthetic texts for the student ablations, without sampling the first pool again.

    python benchmarks/student/join_pools.py runs/demo-20k runs/demo-40k --synthesis-seed 1

RUN is a finished `gendistill demo` run (the demo's data and split). This makes RUN-s<seed> (RUN's data, teacher and generator, hard-linked)
and samples and annotates there as many texts again as RUN has, with the synthesize stage's seed changed (the
shards of another seed are other samples), then OUT: RUN hard-linked, with both pools of synthetic texts joined
(texts of the second already in the first dropped) and their teacher logits concatenated in the same order.
`ablate.py OUT ...` then keeps the surest N of the joined pool. Resumes: a finished RUN-s<seed> is reused.
"""

import argparse
import dataclasses
import subprocess
from pathlib import Path

from gendistill.compressor.annotate import load_annotations
from gendistill.compressor.api import DEMO
from gendistill.compressor.pipeline import STAGE_SETTINGS, build_settings, run_compress
from gendistill.compressor.data import DataSettings
from gendistill.compressor.rundir import read_json, stage_path
from gendistill.compressor.synthesize import load_synthetic
from ablate import setting_value  # benchmarks/student/ablate.py
from probe_run import join_synthetic_pools  # benchmarks/student/probe_run.py


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--synthesis-seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="A setting RUN was made with that is not the default, by its Python name (e.g. generator_conditional=true).")
    args = parser.parse_args()
    # By API name (`student_epochs`), typed as its field is; an unknown name stays text for build_settings to refuse.
    fields = {cls.api_name(f.name): (cls, f.name) for cls in (DataSettings, *STAGE_SETTINGS.values()) for f in dataclasses.fields(cls)}
    values = {name: setting_value(*fields[name], value) if name in fields else value for name, value in (pair.split("=", 1) for pair in args.set)}
    count = read_json(stage_path(args.run_dir, "synthesize") / "settings.json")["count"]
    second = args.run_dir.with_name(f"{args.run_dir.name}-s{args.synthesis_seed}")
    if not second.is_dir():
        subprocess.run(["cp", "-al", str(args.run_dir), str(second)], check=True)
    settings = build_settings(DEMO["data"], per_class=DEMO["per_class"], synthetic=count, no_export=True, labeled_only_baseline=False, **values)
    settings = dataclasses.replace(settings, synthesize=dataclasses.replace(settings.synthesize, seed=args.synthesis_seed))
    # Only synthesize and what is built on it are re-made; a change to the earlier stages' settings is refused.
    resumed = read_json(stage_path(second, "synthesize") / "settings.json").get("seed") == args.synthesis_seed
    run_compress(settings, second, from_stage=None if resumed else "synthesize")

    join_synthetic_pools(args.run_dir, args.out, (load_synthetic(args.run_dir), load_annotations(args.run_dir, "synthetic")),
                         (load_synthetic(second), load_annotations(second, "synthetic")))


if __name__ == "__main__":
    main()
