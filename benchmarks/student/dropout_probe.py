"""Probe: the bigru's dropout on its max-pooled states (StudentConfig's 0.5, the Kim-CNN paper's) at another rate.

benchmarks/student/ablate.py (same arguments) with the bigru built at `--dropout D`; each variant's name gets
`,dropout=D` so its students and results stay apart from ablate.py's own:

    python benchmarks/student/dropout_probe.py --dropout 0.2 runs/demo OUT.json --seeds 3 \\
        --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher

Results: benchmarks/student/RESULTS.md, "The bigru's dropout".
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main():
    import ablate
    from gendistill.compressor import distill

    i = sys.argv.index("--dropout")
    rate = float(sys.argv[i + 1])
    argv = sys.argv[1:i] + sys.argv[i + 2 :]
    shape = distill.student_shape
    distill.student_shape = lambda settings: {**shape(settings), "dropout": rate}
    ablate.EXTRA_KEYS = ablate.EXTRA_KEYS + ("dropout",)
    sys.argv = ["ablate.py", *[a if not a.startswith("bigru:") else f"{a},dropout={rate:g}" for a in argv]]
    ablate.main()


if __name__ == "__main__":
    main()
