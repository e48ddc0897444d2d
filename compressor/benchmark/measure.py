"""How every benchmark row is measured: test scores, batch-1 latency, bytes on disk."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

def scores(predictions, targets, num_labels: int) -> dict:
    from gendistill.compressor.training import accuracy, macro_f1

    return {"accuracy": accuracy(predictions, targets), "macro_f1": macro_f1(predictions, targets, num_labels)}


def median_ms(function, inputs: list, warmup: int = 5) -> float:
    for item in inputs[:warmup]:
        function(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def files_bytes(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file())


def jsonable(value):
    return json.loads(json.dumps(value, default=str))
