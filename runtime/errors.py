"""The one exception type for bad input anywhere in gendistill.

The CLI turns it into a single sentence on stderr and exit code 2; library users catch it.
It lives in the core package so that the runtime, the exporter and the pipeline share it.
"""


class GendistillError(ValueError):
    """Bad input or a bad artifact: the message says what is wrong and how to fix it."""
