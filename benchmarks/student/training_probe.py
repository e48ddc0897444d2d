"""Probe: the student trained another way than the pipeline's, for a setting the pipeline does not expose:
`--dropout D`, the bigru's dropout on its max-pooled states (StudentConfig's 0.5, the Kim-CNN paper's rate), and/or
`--weight-decay WD`, AdamW with decoupled weight decay instead of `train_student`'s plain Adam at the same rate
(every weight, the subword table's included).

benchmarks/student/ablate.py (same arguments) with those changes; each variant's name gets `,dropout=D` and/or
`,weight_decay=WD` so its students and results stay apart from ablate.py's own:

    python benchmarks/student/training_probe.py --dropout 0.2 runs/demo OUT.json --seeds 3 \\
        --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher
    python benchmarks/student/training_probe.py --weight-decay 0.1 runs/demo OUT.json --seeds 3 --variant ...

Results: benchmarks/student/RESULTS.md, "The bigru's dropout" and "Weight decay".
"""

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    import torch

    import ablate
    from gendistill.compressor import distill

    parser = argparse.ArgumentParser(description="ablate.py with the student trained another way")
    parser.add_argument("--dropout", type=float, help="the bigru's dropout on its pooled states")
    parser.add_argument("--weight-decay", type=float, help="train by AdamW at this decoupled weight decay")
    args, rest = parser.parse_known_args()
    probe = {}
    if args.dropout is not None:
        shape = distill.student_shape
        distill.student_shape = lambda settings: {**shape(settings), "dropout": args.dropout}
        probe["dropout"] = f"{args.dropout:g}"
    if args.weight_decay is not None:
        torch.optim.Adam = functools.partial(torch.optim.AdamW, weight_decay=args.weight_decay)  # train_student's optimizer
        probe["weight_decay"] = f"{args.weight_decay:g}"
    if not probe:
        parser.error("give --dropout and/or --weight-decay")
    ablate.main(rest, probe=probe)


if __name__ == "__main__":
    main()
