"""The one exception type for bad input anywhere in gendistill.

The CLI turns it into a single sentence on stderr and exit code 2; library users catch it.
It lives in the core package so that the runtime, the exporter and the pipeline share it.
"""


class GendistillError(ValueError):
    """Bad input or a bad artifact: the message says what is wrong and how to fix it."""


COMPRESS_EXTRA = ("torch", "transformers", "onnx")
"""What the pipeline commands need beyond the core install (`pip install "gendistill[compress]"`)."""


def require_extra(*modules: str) -> None:
    """Fail with one sentence when a module of the `compress` extra (torch, transformers, ...) is missing."""
    import importlib.util

    missing = [m for m in modules or COMPRESS_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise GendistillError(
            f"This needs {', '.join(missing)}, which the core install leaves out; run `pip install \"gendistill[compress]\"`."
        )
