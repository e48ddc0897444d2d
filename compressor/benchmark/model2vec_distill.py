"""Distill a sentence encoder into a model2vec static model: the `model2vec-lr` row's first half.

Run by the benchmark in model2vec's own environment, not imported: `model2vec[distill]` pins transformers < 5.4,
which the project's environment cannot share (`make model2vec-env` makes it). Standalone on purpose (only
model2vec is imported), so that environment needs nothing of gendistill:

    .venv-model2vec/bin/python compressor/benchmark/model2vec_distill.py ENCODER_DIR OUT_DIR [PCA_DIMS]

model2vec's own recipe and defaults (each vocabulary token run through the encoder, PCA to 256 dimensions,
SIF weighting). OUT_DIR is written whole or not at all (a temporary sibling, then renamed).
"""

import shutil
import sys
import time
from pathlib import Path

from model2vec.distill import distill


def main(source: str, out: str, pca_dims: int = 256) -> None:
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.time()
    model = distill(model_name=source, pca_dims=pca_dims)
    model.save_pretrained(str(partial))
    (partial / "distill_seconds.txt").write_text(f"{time.time() - started:.1f}\n")
    partial.rename(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
