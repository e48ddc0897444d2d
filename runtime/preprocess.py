"""The student's input path, the one implementation training, export and every Python runtime share.

text -> normalize (lowercase, digits -> 0) -> sentencepiece ids -> truncate to `max_length` -> pad with
`pad_id` to the longest text of the batch, but at least `min_length` (the widest convolution kernel:
a shorter input fails inside the ONNX graph). The student masks padding, so a text gets the same logits
alone or in any batch. The browser demo re-implements exactly these steps (mobile_demo/app.js), and
golden.jsonl proves that it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DIGIT = re.compile(r"[0-9]")
# sentencepiece marks the start of a word with this symbol; see `_word_boundaries_are_piece_boundaries`.
WORD_START = "\u2581"


def normalize(text: str, lowercase: bool = True, digits_to_zero: bool = False) -> str:
    """Lowercase and/or map ASCII digits to 0 (BPEmb's preprocessing), nothing else.

    Unicode normalisation is left to sentencepiece (its model carries its own NFKC rules).
    """
    if lowercase:
        text = text.lower()
    if digits_to_zero:
        text = _DIGIT.sub("0", text)
    return text


@dataclass(frozen=True)
class InputSpec:
    """How text becomes the student's `input_ids`; bundle.json records it as "preprocessing"."""

    lowercase: bool = True
    digits_to_zero: bool = False
    max_length: int = 128
    """Texts are truncated to this many subword ids."""
    min_length: int = 5
    """Inputs are padded to at least this many ids (the widest kernel)."""
    pad_id: int = 0


class StudentInput:
    """sentencepiece ids for the student, following an `InputSpec`. Thread-safe (the server shares one)."""

    def __init__(self, tokenizer, spec: InputSpec):
        self.tokenizer = tokenizer
        self.spec = spec
        self._can_cut_long_texts = _word_boundaries_are_piece_boundaries(tokenizer)
        # A text this long (in characters) may be cut before tokenizing; see `_encode_long`.
        self._long_text_chars = 16 * spec.max_length

    @classmethod
    def load(cls, model_file: str | Path, spec: InputSpec) -> "StudentInput":
        import sentencepiece

        return cls(sentencepiece.SentencePieceProcessor(model_file=str(model_file)), spec)

    def encode_one(self, text: str) -> list[int]:
        """The ids of one text, truncated, not padded: what golden.jsonl records as "ids"."""
        if len(text) > self._long_text_chars and self._can_cut_long_texts:
            return self._encode_long(text)
        return self._ids(text)[: self.spec.max_length]

    def encode(self, texts: list[str]) -> list[list[int]]:
        # One call per text: sentencepiece's list API starts a thread pool per call, which costs
        # ~0.4 ms even with num_threads=1, far more than tokenizing a short text (~5 us).
        return [self.encode_one(text) for text in texts]

    def pad(self, batch_ids: list[list[int]]) -> np.ndarray:
        """int64 [len(batch_ids), max(min_length, longest)] padded with pad_id."""
        spec = self.spec
        width = max(spec.min_length, max(map(len, batch_ids), default=0))
        if len(batch_ids) == 1:  # the latency-critical case: skip numpy's per-row assignment
            ids = batch_ids[0]
            return np.array([ids + [spec.pad_id] * (width - len(ids))], dtype=np.int64)
        padded = np.full((len(batch_ids), width), spec.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch_ids):
            padded[row, : len(ids)] = ids
        return padded

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Encoded and padded: one batch ready for the model."""
        return self.pad(self.encode(texts))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(normalize(text, self.spec.lowercase, self.spec.digits_to_zero), out_type=int)

    def _encode_long(self, text: str) -> list[int]:
        """The first `max_length` ids of a very long text without tokenizing all of it (a 1 MB text
        takes ~0.2 s to tokenize in full).

        Exact, because the text is only ever cut just before an ASCII space: with this tokenizer no
        piece spans a word boundary (checked at load), and lowercasing, digit mapping and
        sentencepiece's whitespace normalisation of the words before a space do not depend on what
        follows it. So the prefix's ids are the first ids of the whole text; once the prefix yields at
        least `max_length` ids they are the answer. Otherwise the prefix doubles, up to the whole text.
        """
        budget, max_length = self._long_text_chars, self.spec.max_length
        while budget < len(text):
            cut = text.find(" ", budget)
            if cut < 0:
                break
            ids = self._ids(text[:cut])
            if len(ids) >= max_length:
                return ids[:max_length]
            budget = 2 * cut
        return self._ids(text)[:max_length]


def _word_boundaries_are_piece_boundaries(tokenizer) -> bool:
    """True when no piece holds a word-start mark anywhere but at its start (sentencepiece's default
    `split_by_whitespace`), and the mark itself is a known piece: then ids never span a space."""
    if tokenizer.piece_to_id(WORD_START) == tokenizer.unk_id():
        return False
    return all(WORD_START not in tokenizer.id_to_piece(i)[1:] for i in range(tokenizer.get_piece_size()))
