"""`Classifier`: a verified bundle, ready to classify text with numpy + onnxruntime + sentencepiece.

    from gendistill import Classifier
    clf = Classifier.load("bundle/")
    clf.predict("Shares fell after the bank's report")        # -> "business"
    clf.predict_proba(["a text", "another"])                    # -> float32 array [2, num_labels]

Text goes through exactly the steps the student was trained with (`runtime.preprocess.StudentInput`,
the same code training uses). The student masks padding, so a text gets the same probabilities alone
or in any batch; that is what lets `predict_proba` sort texts by length (less padding, faster) and
batch them freely.

onnxruntime and sentencepiece are imported inside `load`, so `import gendistill.runtime` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gendistill.runtime.bundle import LAYOUT, load_manifest, opened_file
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.preprocess import InputSpec, StudentInput

DEFAULT_BATCH_SIZE = 256
BATCH_TOKENS = 32
"""Padded ids per text that one onnxruntime run may average (see `Classifier._batches`)."""


def onnx_session(path: str | Path, threads: int = 1):
    """A CPU onnxruntime session with a fixed thread count: what the runtime, the export checks and the
    latency figures all use. 1 thread is the default: on small shared CPUs 2 were often slower."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: library code must not print onnxruntime's warnings
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class Classifier:
    """A loaded bundle. Thread-safe: the server calls `predict_proba` from many threads at once."""

    def __init__(self, manifest: dict, session, inputs: StudentInput, threads: int, batch_size: int = DEFAULT_BATCH_SIZE):
        self.manifest = manifest
        self.labels: list[str] = list(manifest["labels"])
        self.inputs = inputs
        self.threads = threads
        self.batch_size = batch_size
        self._session = session
        self._input_name = manifest["model"]["inputs"][0]["name"]
        self._output_names = [manifest["model"]["outputs"][0]["name"]]

    @classmethod
    def load(cls, bundle: str | Path, threads: int = 1, verify: bool = True, batch_size: int = DEFAULT_BATCH_SIZE) -> "Classifier":
        """Load a bundle directory, checking its schema version and (with `verify`) every file's SHA-256.

        `threads` is onnxruntime's intra-op thread count; 1 is the default because more threads were
        often slower on small shared CPUs (measured on 2-vCPU machines).
        """
        if not isinstance(threads, int) or threads < 1:
            raise GendistillError(f"threads must be a positive integer, not {threads!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GendistillError(f"batch_size must be a positive integer, not {batch_size!r}.")
        bundle = Path(bundle)
        manifest = load_manifest(bundle, verify=verify)
        _check_manifest(manifest, bundle)

        # load_manifest has checked that both are hashed files of the bundle, not paths out of it.
        model_path = bundle / opened_file(manifest, "model")
        tokenizer_path = bundle / opened_file(manifest, "tokenizer")
        try:
            session = onnx_session(model_path, threads)
        except Exception as exc:  # onnxruntime raises its own exception types, all of which mean "bad model file"
            raise GendistillError(f"onnxruntime cannot load {model_path} ({exc}); re-export the bundle.") from None
        _check_session(session, manifest, model_path)
        p = manifest["preprocessing"]
        spec = InputSpec(lowercase=p["lowercase"], digits_to_zero=p["digits_to_zero"], max_length=p["max_length"],
                         min_length=p["min_length"], pad_id=p["pad_id"])
        try:
            inputs = StudentInput.load(tokenizer_path, spec)
        except (OSError, RuntimeError) as exc:
            raise GendistillError(f"sentencepiece cannot load {tokenizer_path} ({exc}); re-export the bundle.") from None
        return cls(manifest, session, inputs, threads, batch_size)

    # --- public API --------------------------------------------------------------------------------

    def predict(self, texts: str | list[str]) -> str | list[str]:
        """The most probable label: a str for one text, a list for a list of texts."""
        probabilities = self.predict_proba(texts)
        if isinstance(texts, str):
            return self.labels[int(probabilities.argmax())]
        return [self.labels[index] for index in probabilities.argmax(axis=1).tolist()]

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """float32 class probabilities in `self.labels` order: shape [num_labels] for one text,
        [len(texts), num_labels] for a list."""
        return softmax(self.logits(texts))

    def logits(self, texts: str | list[str]) -> np.ndarray:
        """The student's raw float32 outputs, shaped like `predict_proba`'s."""
        if isinstance(texts, str):
            return self._run(self._readable(self.inputs.one_batch, texts))[0]
        texts = _checked_list(texts)
        if len(texts) == 1:  # the latency-critical case (a server's request): no sorting and batching
            return self._run(self._readable(self.inputs.one_batch, texts[0]))
        ids = self.encode(texts)
        # Sorting by length makes each batch's texts similar in length, so little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        logits = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for rows in self._batches(order, [len(ids[row]) for row in order]):
            logits[rows] = self._run(self.inputs.pad([ids[row] for row in rows]))
        return logits

    def _batches(self, order: list[int], lengths: list[int]):
        """Cut the length-sorted texts into runs of at most `batch_size` texts and at most
        `batch_size * BATCH_TOKENS` padded ids: a few long texts must not make every short one in
        their batch pay for their length."""
        budget = self.batch_size * BATCH_TOKENS
        start = 0
        for end in range(1, len(order) + 1):
            size = end - start
            if end == len(order) or size == self.batch_size or (size + 1) * max(lengths[end], self.inputs.spec.min_length) > budget:
                yield order[start:end]
                start = end

    def encode(self, texts: str | list[str]) -> list[int] | list[list[int]]:
        """The student's input ids (truncated, not padded): what golden.jsonl records as "ids"."""
        if isinstance(texts, str):
            return self._encode_one(texts)
        return [self._encode_one(text) for text in _checked_list(texts)]

    # --- internals ---------------------------------------------------------------------------------

    def _encode_one(self, text: str) -> list[int]:
        return self._readable(self.inputs.encode_one, text)

    @staticmethod
    def _readable(encode, text: str):
        """`encode(text)`, or where sentencepiece cannot take the text, `encode` of it as a browser reads it."""
        try:
            return encode(text)
        except (UnicodeEncodeError, RuntimeError):  # sentencepiece's binding raises either, by version
            # A surrogate code point (JSON "\\ud800" decodes to one) has no UTF-8 form, so sentencepiece
            # cannot take it. Read it as JavaScript does (UTF-16): a high+low pair is one character, a
            # lone one U+FFFD, which is what the browser's TextEncoder hands sentencepiece. Only texts
            # that fail pay for this second pass.
            readable = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            if readable == text:
                raise
            return encode(readable)

    def _run(self, input_ids: np.ndarray) -> np.ndarray:
        return self._session.run(self._output_names, {self._input_name: input_ids})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities as every runtime computes them (golden.jsonl too): softmax over the last axis, float32."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)


def _checked_list(texts) -> list[str]:
    if not isinstance(texts, (list, tuple)):
        raise GendistillError(f"Texts must be a string or a list of strings, not {type(texts).__name__}.")
    if not texts:
        raise GendistillError("The list of texts is empty; pass at least one string.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise GendistillError(f"Text {index} is a {type(text).__name__}, not a string; pass strings only.")
    return list(texts)


def _check_manifest(manifest: dict, bundle: Path) -> None:
    """The fields this runtime reads, so that a hand-edited bundle.json fails here with one sentence."""
    where = bundle / LAYOUT.manifest
    try:
        preprocessing = manifest["preprocessing"]
        values = {key: preprocessing[key] for key in ("lowercase", "digits_to_zero", "max_length", "min_length", "pad_id")}
        labels = manifest["labels"]
        names = [manifest["model"]["inputs"][0]["name"], manifest["model"]["outputs"][0]["name"]]
        tokenizer = manifest["tokenizer"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GendistillError(f"{where} lacks the field {exc}; re-export the bundle.") from None
    # bool is an int in Python, so each check names the exact type.
    for key in ("lowercase", "digits_to_zero"):
        if type(values[key]) is not bool:
            raise GendistillError(f"{where} gives preprocessing {key} as {values[key]!r}, not true or false; re-export the bundle.")
    for key, minimum in (("max_length", 1), ("min_length", 1), ("pad_id", 0)):
        if type(values[key]) is not int or values[key] < minimum:
            raise GendistillError(f"{where} gives preprocessing {key} as {values[key]!r}, not an integer of at least {minimum}; re-export the bundle.")
    if not all(isinstance(name, str) for name in names):
        raise GendistillError(f"{where} names the model's input or output with something other than a string; re-export the bundle.")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) for label in labels):
        raise GendistillError(f"{where} must list at least two string labels; re-export the bundle.")
    if not isinstance(tokenizer, dict) or tokenizer.get("type", "sentencepiece") != "sentencepiece" or tokenizer.get("add_bos") or tokenizer.get("add_eos"):
        raise GendistillError(f"{where} asks for a tokenizer this runtime does not implement; upgrade gendistill.")


def _check_session(session, manifest: dict, model_path: Path) -> None:
    """bundle.json is not hashed: its model names and label count must fit the model, or the first
    prediction would fail inside onnxruntime instead of here."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    wanted_input, wanted_output = manifest["model"]["inputs"][0]["name"], manifest["model"]["outputs"][0]["name"]
    if [i.name for i in inputs] != [wanted_input] or wanted_output not in [o.name for o in outputs]:
        raise GendistillError(
            f"{model_path} does not have the input {wanted_input!r} and output {wanted_output!r} that {LAYOUT.manifest} names; re-export the bundle."
        )
    width = next(o for o in outputs if o.name == wanted_output).shape[-1:]
    if width and isinstance(width[0], int) and width[0] != len(manifest["labels"]):
        raise GendistillError(
            f"{model_path} scores {width[0]} labels but {LAYOUT.manifest} lists {len(manifest['labels'])}; re-export the bundle."
        )
