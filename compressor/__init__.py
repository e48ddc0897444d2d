"""gendistill's pipeline: generation-distillation (Melas-Kyriazi et al. 2019) and GAL (He et al. 2022).

data -> teacher -> generator -> synthesize -> annotate -> distill -> evaluate -> export, one module per
stage; `pipeline.run_compress` runs them, `api` is the Python API, `commands` the CLI over it.
Importing this package is cheap; the stages import torch and transformers when they run.
"""
