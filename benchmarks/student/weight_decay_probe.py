"""Probe: the student trained with decoupled weight decay (AdamW) instead of plain Adam.

The student fits its transfer texts far better than it follows the teacher on test texts, and its subword table is
most of its parameters; weight decay pulls every weight, the table's included, toward zero at each step. The
student's own optimizer (`train_student`: Adam at --student-lr) is swapped for AdamW at the same rate with
`--weight-decay WD`; the rest is benchmarks/student/ablate.py (same arguments), and each variant's name gets
`,weight_decay=WD` so its students and results stay apart from ablate.py's own:

    python benchmarks/student/weight_decay_probe.py --weight-decay 0.1 runs/demo OUT.json --seeds 3 \\
        --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher

Results: benchmarks/student/RESULTS.md, "Weight decay".
"""

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    import torch

    import ablate

    parser = argparse.ArgumentParser(description="ablate.py with the student trained by AdamW at a weight decay")
    parser.add_argument("--weight-decay", type=float, required=True)
    args, rest = parser.parse_known_args()
    torch.optim.Adam = functools.partial(torch.optim.AdamW, weight_decay=args.weight_decay)  # train_student's optimizer
    ablate.main(rest, probe={"weight_decay": f"{args.weight_decay:g}"})


if __name__ == "__main__":
    main()
