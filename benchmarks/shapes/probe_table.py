"""The student variants of `prior-probe/` side by side: each results file is `benchmarks/student/ablate.py` run with
one student seed on one benchmark seed's run of a shape (PRIOR-seedN.json), so a row's spread is over the 3 runs.

    python benchmarks/shapes/probe_table.py      # the table in README.md ("Correcting the student's prior")
"""

import json
from pathlib import Path

from compare_priors import cell

HERE = Path(__file__).parent / "prior-probe"


def main():
    print("| teacher prior | student variant | bundle accuracy % | macro-F1 % (PyTorch) | test agreement with the teacher % |")
    print("|---|---|---|---|---|")
    for prior in ("train", "pool"):
        files = sorted(HERE.glob(f"{prior}-seed*.json"))
        variants = {}
        for path in files:
            for spec, entry in json.loads(path.read_text())["variants"].items():
                variants.setdefault(spec, []).extend(entry["per_seed"].values())
        for spec, seeds in variants.items():
            accuracy = [s["int8_accuracy"] if s.get("int8_accuracy") is not None else s["accuracy"] for s in seeds]
            print(f"| {prior} | {spec.split(':', 3)[-1] if spec.count(':') == 3 else 'defaults of the run'} | {cell(accuracy)} | "
                  f"{cell([s['macro_f1'] for s in seeds])} | {cell([s['test_agreement'] for s in seeds])} |")


if __name__ == "__main__":
    main()
