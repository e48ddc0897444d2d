"""`Classifier`: a verified bundle, ready to classify text with numpy + onnxruntime + sentencepiece.

    from runtime import Classifier
    clf = Classifier.load("bundle/")
    clf.predict("Shares fell after the bank's report")        # -> "business"
    clf.predict_proba(["a text", "another"])                    # -> float32 array [2, num_labels]

Text goes through exactly the steps the student was trained with (compressor.student.StudentTokenizer):
normalize with the bundle's settings, sentencepiece ids, truncate to `max_length`, pad with `pad_id` to
the longest text in the batch but at least `min_length`. The student masks padding, so a text gets the
same probabilities alone or in any batch; that is what lets `predict_proba` sort texts by length (less
padding, faster) and batch them freely.

onnxruntime and sentencepiece are imported inside `load`, so `import runtime` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.bundle import LAYOUT, load_manifest
from runtime.errors import GendistillError
from runtime.preprocess import normalize

DEFAULT_BATCH_SIZE = 256
BATCH_TOKENS = 32
"""Padded ids per text that one onnxruntime run may average (see `Classifier._batches`)."""
# sentencepiece marks the start of a word with this symbol; see `_word_boundaries_are_piece_boundaries`.
WORD_START = "\u2581"


class Classifier:
    """A loaded bundle. Thread-safe: the server calls `predict_proba` from many threads at once."""

    def __init__(self, manifest: dict, session, tokenizer, threads: int, batch_size: int = DEFAULT_BATCH_SIZE):
        preprocessing = manifest["preprocessing"]
        self.manifest = manifest
        self.labels: list[str] = list(manifest["labels"])
        self.lowercase = bool(preprocessing["lowercase"])
        self.digits_to_zero = bool(preprocessing["digits_to_zero"])
        self.max_length = int(preprocessing["max_length"])
        self.min_length = int(preprocessing["min_length"])
        self.pad_id = int(preprocessing["pad_id"])
        self.threads = threads
        self.batch_size = batch_size
        self._session = session
        self._tokenizer = tokenizer
        self._input_name = manifest["model"]["inputs"][0]["name"]
        self._output_names = [manifest["model"]["outputs"][0]["name"]]
        self._can_cut_long_texts = _word_boundaries_are_piece_boundaries(tokenizer)
        # A text this long (in characters) may be cut before tokenizing; see `_encode_long`.
        self._long_text_chars = 16 * self.max_length

    @classmethod
    def load(cls, bundle: str | Path, threads: int = 1, verify: bool = True, batch_size: int = DEFAULT_BATCH_SIZE) -> "Classifier":
        """Load a bundle directory, checking its schema version and (with `verify`) every file's SHA-256.

        `threads` is onnxruntime's intra-op thread count; 1 is the default because more threads were
        often slower on small shared CPUs (EDGE.md).
        """
        if not isinstance(threads, int) or threads < 1:
            raise GendistillError(f"threads must be a positive integer, not {threads!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GendistillError(f"batch_size must be a positive integer, not {batch_size!r}.")
        bundle = Path(bundle)
        manifest = load_manifest(bundle, verify=verify)
        _check_manifest(manifest, bundle)

        import onnxruntime
        import sentencepiece

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: library code must not print onnxruntime's warnings
        model_path = bundle / manifest["model"].get("file", LAYOUT.model)
        tokenizer_path = bundle / manifest["tokenizer"].get("file", LAYOUT.tokenizer)
        try:
            session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types, all of which mean "bad model file"
            raise GendistillError(f"onnxruntime cannot load {model_path} ({exc}); re-export the bundle.") from None
        try:
            tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_path))
        except (OSError, RuntimeError) as exc:
            raise GendistillError(f"sentencepiece cannot load {tokenizer_path} ({exc}); re-export the bundle.") from None
        return cls(manifest, session, tokenizer, threads, batch_size)

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
            return self._run(self._pad([self._encode_one(texts)]))[0]
        texts = _checked_list(texts)
        ids = self.encode(texts)
        # Sorting by length makes each batch's texts similar in length, so little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        logits = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for rows in self._batches(order, [len(ids[row]) for row in order]):
            logits[rows] = self._run(self._pad([ids[row] for row in rows]))
        return logits

    def _batches(self, order: list[int], lengths: list[int]):
        """Cut the length-sorted texts into runs of at most `batch_size` texts and at most
        `batch_size * BATCH_TOKENS` padded ids: a few long texts must not make every short one in
        their batch pay for their length."""
        budget = self.batch_size * BATCH_TOKENS
        start = 0
        for end in range(1, len(order) + 1):
            size = end - start
            if end == len(order) or size == self.batch_size or (size + 1) * max(lengths[end], self.min_length) > budget:
                yield order[start:end]
                start = end

    def encode(self, texts: str | list[str]) -> list[int] | list[list[int]]:
        """The student's input ids (truncated, not padded): what golden.jsonl records as "ids"."""
        if isinstance(texts, str):
            return self._encode_one(texts)
        # One call per text: sentencepiece's list API starts a thread pool per call, which costs
        # ~0.4 ms even with num_threads=1, far more than tokenizing a short text (~5 us).
        return [self._encode_one(text) for text in _checked_list(texts)]

    # --- internals ---------------------------------------------------------------------------------

    def _encode_one(self, text: str) -> list[int]:
        if len(text) > self._long_text_chars and self._can_cut_long_texts:
            return self._encode_long(text)
        return self._tokenizer.encode(normalize(text, self.lowercase, self.digits_to_zero), out_type=int)[: self.max_length]

    def _encode_long(self, text: str) -> list[int]:
        """The first `max_length` ids of a very long text without tokenizing all of it (a 1 MB text
        takes ~0.2 s to tokenize in full).

        Exact, because the text is only ever cut just before an ASCII space: with this tokenizer no
        piece spans a word boundary (checked at load), and lowercasing, digit mapping and
        sentencepiece's whitespace normalisation of the words before a space do not depend on what
        follows it. So the prefix's ids are the first ids of the whole text; once the prefix yields at
        least `max_length` ids they are the answer. Otherwise the prefix doubles, up to the whole text.
        """
        budget = self._long_text_chars
        while budget < len(text):
            cut = text.find(" ", budget)
            if cut < 0:
                break
            ids = self._tokenizer.encode(normalize(text[:cut], self.lowercase, self.digits_to_zero), out_type=int)
            if len(ids) >= self.max_length:
                return ids[: self.max_length]
            budget = 2 * cut
        return self._tokenizer.encode(normalize(text, self.lowercase, self.digits_to_zero), out_type=int)[: self.max_length]

    def _pad(self, batch_ids: list[list[int]]) -> np.ndarray:
        width = max(self.min_length, max(map(len, batch_ids)))
        if len(batch_ids) == 1:  # the latency-critical case: skip numpy's per-row assignment
            ids = batch_ids[0]
            return np.array([ids + [self.pad_id] * (width - len(ids))], dtype=np.int64)
        padded = np.full((len(batch_ids), width), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch_ids):
            padded[row, : len(ids)] = ids
        return padded

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


def _word_boundaries_are_piece_boundaries(tokenizer) -> bool:
    """True when no piece holds a word-start mark anywhere but at its start (sentencepiece's default
    `split_by_whitespace`), and the mark itself is a known piece: then ids never span a space."""
    if tokenizer.piece_to_id(WORD_START) == tokenizer.unk_id():
        return False
    return all(WORD_START not in tokenizer.id_to_piece(i)[1:] for i in range(tokenizer.get_piece_size()))


def _check_manifest(manifest: dict, bundle: Path) -> None:
    """The fields this runtime reads, so that a hand-edited bundle.json fails here with one sentence."""
    try:
        preprocessing = manifest["preprocessing"]
        for key in ("lowercase", "digits_to_zero", "max_length", "min_length", "pad_id"):
            preprocessing[key]
        labels = manifest["labels"]
        manifest["model"]["inputs"][0]["name"]
        manifest["model"]["outputs"][0]["name"]
        tokenizer = manifest["tokenizer"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GendistillError(f"{bundle / LAYOUT.manifest} lacks the field {exc}; re-export the bundle.") from None
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) for label in labels):
        raise GendistillError(f"{bundle / LAYOUT.manifest} must list at least two string labels; re-export the bundle.")
    if tokenizer.get("type", "sentencepiece") != "sentencepiece" or tokenizer.get("add_bos") or tokenizer.get("add_eos"):
        raise GendistillError(f"{bundle / LAYOUT.manifest} asks for a tokenizer this runtime does not implement; upgrade gendistill.")
