"""How the benchmark times a student bundle, old way and new, side by side on the same bundles.

    python benchmarks/student/latency_method.py runs/demo benchmarks/student/latency-method.json BUNDLE [BUNDLE ...]

old: one pass of `predict_proba([text])` over the first 100 test texts, median, in the benchmark's own process (which
holds torch and has just trained with it: here a second of 2-thread matrix products right before, as training leaves
it). new: `measure.bundle_median_ms`, the fastest of 5 such passes, in a new process that imports only the runtime.
Three alternations per bundle, so the machine's state at any one moment weighs on both alike.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gendistill.compressor.benchmark.measure import bundle_median_ms
from gendistill.compressor.rundir import load_split
from gendistill.runtime import Classifier


def one_pass_ms(classifier, texts):
    for text in texts[:5]:
        classifier.predict_proba([text])
    times = []
    for text in texts:
        started = time.perf_counter()
        classifier.predict_proba([text])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main():
    run_dir, out, *bundles = sys.argv[1:]
    texts = load_split(run_dir, "test")[0][:100]
    matrix = torch.randn(512, 512)
    results = {"texts": len(texts), "bundles": {}}
    for bundle in bundles:
        classifier = Classifier.load(bundle, threads=1)
        rows = results["bundles"][bundle] = {"old": [], "new": []}
        for _ in range(3):
            deadline = time.time() + 1
            while time.time() < deadline:
                matrix @ matrix
            rows["old"].append(one_pass_ms(classifier, texts))
            rows["new"].append(bundle_median_ms(bundle, texts))
        print(f"{bundle}: old {' / '.join(f'{v:.3f}' for v in rows['old'])} ms, new {' / '.join(f'{v:.3f}' for v in rows['new'])} ms")
    Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
