"""Student variants side by side: each results file in FOLDER is `benchmarks/student/ablate.py` run with one student
seed on one seed's run of a shape (PREFIX-seedN.json, or seedN.json for the prefix ""), so a row's spread is over the runs.

    python benchmarks/shapes/probe_table.py                       # prior-probe/: README.md, "Correcting the student's prior"
    python benchmarks/shapes/probe_table.py mix-probe ""          # mix-probe/: README.md, "The transfer texts' class mix"
"""

import json
import sys
from pathlib import Path

from compare_priors import cell


def main(folder: str = "prior-probe", *prefixes: str):
    here = Path(__file__).parent / folder
    print("| run | student variant | bundle accuracy % | macro-F1 % (PyTorch) | test agreement with the teacher % |")
    print("|---|---|---|---|---|")
    for prefix in prefixes or ("train", "pool"):
        files = sorted(here.glob(f"{prefix}-seed*.json" if prefix else "seed*.json"))
        variants = {}
        for path in files:
            for spec, entry in json.loads(path.read_text())["variants"].items():
                variants.setdefault(spec, []).extend(entry["per_seed"].values())
        for spec, seeds in variants.items():
            accuracy = [s["int8_accuracy"] if s.get("int8_accuracy") is not None else s["accuracy"] for s in seeds]
            print(f"| {prefix or folder} | {spec.split(':', 3)[-1] if spec.count(':') == 3 else 'defaults of the run'} | {cell(accuracy)} | "
                  f"{cell([s['macro_f1'] for s in seeds])} | {cell([s['test_agreement'] for s in seeds])} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
