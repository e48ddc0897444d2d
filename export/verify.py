"""The checks an export must pass before it is written as done, and the latency it reports.

1. fp32 ONNX vs PyTorch on the real test texts: input/output names, dtypes, shapes, max |logit diff|.
2. int8 vs fp32 (`judge_int8`), by two rules that account for how many texts they rest on:
   - agreement: on the check texts (thousands where the run has them), the one-sided Clopper-Pearson
     upper bound (at INT8_CONFIDENCE, shared by the recipes tried) on the rate at which int8 picks
     another label than fp32 must be under MAX_INT8_DISAGREEMENT. The bound, not the observed rate, so
     that 1 disagreement in 59 texts (which says nothing about a 1% rate) is not read as a failure, nor
     0 in 59 as a pass: too few texts cannot show int8 is good, and `min_check_texts` says how many can.
   - accuracy: on the test split, int8 is refused when its accuracy is more than MAX_INT8_ACCURACY_LOSS
     below fp32's and the test split resolves that loss: an exact one-sided sign test on the test texts
     that only one of the two models gets right has p < ACCURACY_LOSS_SIGNIFICANCE. One text of 59
     going wrong is 1.7 points, but chance.
Check 1 raises GendistillError (one sentence) when its limit is broken; check 2 returns its verdict and
the caller decides what to ship.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from gendistill.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from gendistill.runtime.classifier import onnx_session
from gendistill.runtime.errors import GendistillError

MAX_FP32_DIFF = 1e-4
"""fp32 ONNX must give PyTorch's logits to within this, or within ROUNDING_FACTOR times PyTorch's own float32 rounding
when that is more (float rounding, not a different model)."""
ROUNDING_FACTOR = 10
"""How far past PyTorch's own float32 rounding (its largest |logit diff| from the same model in float64) the fp32 ONNX
model may be. Most students' rounding is about 1e-6 and their ONNX models are 4-5e-6 from PyTorch, so 1e-4 decides;
but a GRU can amplify rounding over its steps: a bigru trained on 200 labeled texts was 2.3e-4 from PyTorch in ONNX,
and PyTorch itself gave that text's logits 2e-4 apart at two padding widths (its oneDNN kernel) and its GRU states 3.8e-4
from float64. A broken graph (a gate out of order, a text read the wrong way) is off by the logits' own size."""
MAX_INT8_DISAGREEMENT = 0.01
"""int8 must be shown (at INT8_CONFIDENCE) to pick fp32's label on at least 99% of texts."""
INT8_CONFIDENCE = 0.95
"""How sure the agreement rule must be over all the recipes an export may try: with k recipes each is
judged at 1 - (1 - INT8_CONFIDENCE) / k (Bonferroni), so more recipes give a bad model no more chances."""
MAX_INT8_ACCURACY_LOSS = 0.005
"""int8 test accuracy may be at most this far (0.5 points) below fp32's, unless the loss may be chance."""
ACCURACY_LOSS_SIGNIFICANCE = 0.05
"""A larger loss refuses int8 only when a one-sided sign test says it is not chance at this level."""
MAX_MOBILE_DIFF = 1e-3
"""model.ort runs the same graph with its optimisations fixed at conversion; allow rounding only."""


def check_io(session, num_labels: int, what: str) -> None:
    """The graph takes `input_ids` int64 [batch, sequence] and returns `logits` float32 [batch, num_labels]."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    found = ([(i.name, i.type, len(i.shape)) for i in inputs], [(o.name, o.type, len(o.shape)) for o in outputs])
    wanted = ([(INPUT_NAME, "tensor(int64)", 2)], [(OUTPUT_NAME, "tensor(float)", 2)])
    if found != wanted:
        raise GendistillError(f"The {what} model's inputs and outputs are {found}, not {wanted}; the export is broken, so no bundle was written.")
    dynamic = inputs[0].shape
    if not all(isinstance(axis, str) for axis in dynamic) or outputs[0].shape[1] not in (num_labels, "num_labels"):
        raise GendistillError(
            f"The {what} model has input shape {dynamic} and output shape {outputs[0].shape}, not dynamic "
            f"[batch, sequence] -> [batch, {num_labels}]; the export is broken, so no bundle was written."
        )


def check_fp32_against_torch(torch_logits: np.ndarray, fp32_logits: np.ndarray, exact_logits: np.ndarray) -> dict:
    """Max |logit diff| between the fp32 ONNX model and PyTorch, against the limit: MAX_FP32_DIFF, or ROUNDING_FACTOR
    times PyTorch's own rounding (its max |logit diff| from `exact_logits`, the same model in float64) when that is
    more. Raises if the diff is not under the limit; returns {"diff", "rounding", "limit"}."""
    if fp32_logits.shape != torch_logits.shape:
        raise GendistillError(
            f"The fp32 ONNX model returned logits of shape {fp32_logits.shape} where PyTorch gives {torch_logits.shape}; the export is broken, so no bundle was written."
        )

    def largest(a, b):
        return float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0

    diff, rounding = largest(fp32_logits, torch_logits), largest(torch_logits, exact_logits)
    limit = max(MAX_FP32_DIFF, ROUNDING_FACTOR * rounding)
    if not diff < limit:  # `not <` also refuses NaN
        raise GendistillError(
            f"The fp32 ONNX model's logits differ from PyTorch's by up to {diff:.2e} (limit {limit:.1e}: PyTorch's own float32 "
            f"rounding is {rounding:.1e}) on the test texts, so the export is refused and no bundle was written; this is a bug, "
            "please report it with the run directory."
        )
    return {"diff": diff, "rounding": rounding, "limit": limit}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def disagreement_bound(disagreements: int, texts: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound on a disagreement rate seen as `disagreements`
    of `texts`: the largest rate that still gives this few disagreements with probability 1 - confidence.
    Exact (never too low), unlike the normal approximation, which fails at the rare counts that matter here.
    """
    if texts == 0 or disagreements >= texts:
        return 1.0
    low, high = disagreements / texts, 1.0
    for _ in range(60):  # bisection: the chance of so few disagreements falls as the rate grows
        rate = (low + high) / 2
        if _binomial_cdf(disagreements, texts, rate) > 1 - confidence:
            low = rate
        else:
            high = rate
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), 0 < p < 1, summed in log space so large n cannot underflow."""
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    return sum(math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q) for i in range(k + 1))


def min_check_texts(confidence: float) -> int:
    """The fewest texts on which int8 can pass the agreement rule at all (with no disagreement)."""
    return math.floor(math.log(1 - confidence) / math.log1p(-MAX_INT8_DISAGREEMENT)) + 1


def loss_p_value(worse: int, better: int) -> float:
    """One-sided exact sign test: the chance that int8, if it were as accurate as fp32, would be wrong
    where fp32 is right on at least `worse` of the `worse + better` test texts only one of them gets right."""
    texts = worse + better
    return sum(math.comb(texts, i) for i in range(worse, texts + 1)) / 2**texts


def only_right(reference_right: np.ndarray, candidate_right: np.ndarray) -> tuple[int, int]:
    """Of the texts only one of two models gets right (per text: right or not): how many are the reference's, how many
    the candidate's."""
    return int((reference_right & ~candidate_right).sum()), int((candidate_right & ~reference_right).sum())


def accuracy_loss(reference_right: np.ndarray, candidate_right: np.ndarray) -> dict:
    """The accuracy rule, for any quantized model against its reference (the student's int8 against fp32, the
    int8 teacher against torch): per text whether each got it right -> the loss in accuracy, the texts only one
    of them gets right, the sign test's p-value, and `refused`: a loss above MAX_INT8_ACCURACY_LOSS that the
    test says is not chance."""
    worse, better = only_right(reference_right, candidate_right)
    loss, p_value = (worse - better) / max(len(reference_right), 1), loss_p_value(worse, better)
    return {"loss": loss, "worse": worse, "better": better, "p_value": p_value,
            "refused": loss > MAX_INT8_ACCURACY_LOSS and p_value < ACCURACY_LOSS_SIGNIFICANCE}


def judge_int8(fp32_check: np.ndarray, int8_check: np.ndarray, fp32_test: np.ndarray, int8_test: np.ndarray,
               test_labels: np.ndarray, confidence: float) -> dict:
    """The figures of one int8 model against fp32 and its verdict by the module's two rules: logits on
    the check texts for agreement, on the test split for accuracy. "failed_rule" is the rule that
    refused it ("agreement" first, then "accuracy"), None when it passed."""
    texts = len(fp32_check)
    disagreements = int((fp32_check.argmax(axis=1) != int8_check.argmax(axis=1)).sum())
    bound = disagreement_bound(disagreements, texts, confidence)
    int8_right = int8_test.argmax(axis=1) == test_labels
    accuracy = accuracy_loss(fp32_test.argmax(axis=1) == test_labels, int8_right)
    if not bound < MAX_INT8_DISAGREEMENT:
        failed_rule = "agreement"
    elif accuracy["refused"]:
        failed_rule = "accuracy"
    else:
        failed_rule = None
    return {
        "disagreements": disagreements, "agreement": 1 - disagreements / texts, "disagreement_bound": bound,
        "int8_test_accuracy": float(int8_right.mean()), "test_accuracy_loss": accuracy["loss"], "test_texts_worse": accuracy["worse"],
        "test_texts_better": accuracy["better"], "test_loss_p_value": accuracy["p_value"], "passed": failed_rule is None, "failed_rule": failed_rule,
    }


def refusal_reason(attempt: dict, texts: int, confidence: float) -> str:
    """Why `attempt` (a `judge_int8` result that failed) was refused, as a clause that follows "because"."""
    if attempt["failed_rule"] == "agreement":
        return (f"int8 disagreed with fp32 on {attempt['disagreements']} of {texts} texts ({1 - attempt['agreement']:.1%}; "
                f"up to {attempt['disagreement_bound']:.1%} at {confidence:.1%} confidence, limit {MAX_INT8_DISAGREEMENT:.0%})")
    return (f"int8 lost {100 * attempt['test_accuracy_loss']:.1f} points of test accuracy against fp32 ({attempt['test_texts_worse']} "
            f"test texts newly wrong, {attempt['test_texts_better']} newly right, p = {attempt['test_loss_p_value']:.2g}; "
            f"limit {100 * MAX_INT8_ACCURACY_LOSS:.1f} points)")


def check_mobile_against_onnx(onnx_logits: np.ndarray, ort_logits: np.ndarray) -> float:
    diff = float(np.abs(ort_logits.astype(np.float64) - onnx_logits).max()) if onnx_logits.size else 0.0
    same_labels = bool((onnx_logits.argmax(axis=1) == ort_logits.argmax(axis=1)).all())
    if not (diff < MAX_MOBILE_DIFF and same_labels):
        raise GendistillError(
            f"model.ort's logits differ from model.onnx's by up to {diff:.2e} (limit {MAX_MOBILE_DIFF:.0e}) on the test texts, "
            "so no bundle was written; export without --mobile and report this with the run directory."
        )
    return diff


def batch1_latency_ms(model_path, single_inputs: list[np.ndarray], threads: int, runs: int = 300) -> float:
    """Median wall time (ms) of one batch-1 inference in onnxruntime, cycling over real test inputs."""
    session = onnx_session(model_path, threads=threads)
    feeds = [{INPUT_NAME: ids} for ids in single_inputs]
    for feed in feeds[:20]:  # warm-up: first runs allocate buffers
        session.run([OUTPUT_NAME], feed)
    times = []
    for i in range(runs):
        feed = feeds[i % len(feeds)]
        started = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
