"""gendistill's pipeline: generation-distillation (Melas-Kyriazi et al. 2019) and GAL (He et al. 2022).

teacher -> generator -> synthesize -> annotate -> distill -> evaluate -> export.
Importing this package is cheap; the stages import torch and transformers when they run.
"""

import importlib.util

__version__ = "0.1.0"


def require_extra(*modules: str) -> None:
    """Fail with one sentence if the `compress` extra (torch, transformers, ...) is not installed."""
    from runtime.errors import GendistillError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise GendistillError(
            f"This command needs {', '.join(missing)}, which the core install leaves out; "
            'run `pip install "gendistill[compress]"`.'
        )
