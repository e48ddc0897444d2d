"""Probe: the bigru's dropout on its max-pooled states (StudentConfig's 0.5, the Kim-CNN paper's) at another rate.

benchmarks/student/ablate.py (same arguments) with the bigru built at `--dropout D`; each variant's name gets
`,dropout=D` so its students and results stay apart from ablate.py's own:

    python benchmarks/student/dropout_probe.py --dropout 0.2 runs/demo OUT.json --seeds 3 \\
        --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher

Results: benchmarks/student/RESULTS.md, "The bigru's dropout".
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    import ablate
    from gendistill.compressor import distill

    parser = argparse.ArgumentParser(description="ablate.py with the bigru built at another dropout rate")
    parser.add_argument("--dropout", type=float, required=True)
    args, rest = parser.parse_known_args()
    shape = distill.student_shape
    distill.student_shape = lambda settings: {**shape(settings), "dropout": args.dropout}
    ablate.main(rest, probe={"dropout": f"{args.dropout:g}"})


if __name__ == "__main__":
    main()
