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
# sentencepiece marks the start of a word with this symbol; see `_words_are_independent`.
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
    """sentencepiece ids for the student, following an `InputSpec`. Thread-safe (the server shares one).

    Texts are tokenized a word at a time through a cache of the words seen so far (`word_ids`): on news
    articles of ~2,000 characters sentencepiece's BPE took ~0.3 ms a text, several times the student itself,
    while looking ~330 known words up took ~0.05 ms (benchmarks/student/word_cache.py). sentencepiece has no
    such cache of its own, hence this one. It gives exactly sentencepiece's ids for the whole text because,
    with sentencepiece's defaults, (1) no piece spans a word start (`_words_are_independent`, checked at
    load), (2) normalization (NFKC and the like) maps no character sequence across a space, tab, newline
    or carriage return, and (3) those four characters, however many in a row, read as one word start.
    A probe text spot-checks (2) and (3) at load (`_probe_agrees`); a tokenizer that fails a check is used
    whole, text by text (`by_word` False). A text whose every word is new costs ~15% more than sentencepiece
    alone (its words are split off, tokenized in one call and cached one by one).

    The cache holds each word's ids as int64 bytes, not as a tuple of ints: a text's ids are then one `bytes.join`
    of its words' entries and one `np.frombuffer`, ~2.5 us for a 380-word article, where flattening tuples into a
    list and converting that to an array took ~18 us (benchmarks/student/word_cache.py times both paths).
    """

    def __init__(self, tokenizer, spec: InputSpec):
        self.tokenizer = tokenizer
        self.spec = spec
        self.word_ids: dict[str, bytes] = {}
        """The cache: each word seen (normalized) -> its ids as int64 bytes (`as_ids`). Safe to clear or replace at any time."""
        pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.get_piece_size())]
        self._starts_word = [piece.startswith(WORD_START) for piece in pieces]
        self.by_word = _words_are_independent(tokenizer, pieces) and self._probe_agrees()

    @classmethod
    def load(cls, model_file: str | Path, spec: InputSpec) -> "StudentInput":
        import sentencepiece

        return cls(sentencepiece.SentencePieceProcessor(model_file=str(model_file)), spec)

    def encode_one(self, text: str) -> list[int]:
        """The ids of one text, truncated, not padded: what golden.jsonl records as "ids"."""
        return as_ids(self.ids_bytes(text)).tolist()

    def one_batch(self, text: str) -> np.ndarray:
        """One text encoded and padded: int64 [1, max(min_length, its ids)], the same as `pad([encode_one(text)])`,
        built without a Python list (the latency-critical case: a server's request)."""
        ids = as_ids(self.ids_bytes(text))
        if len(ids) < self.spec.min_length:
            ids = np.concatenate([ids, np.full(self.spec.min_length - len(ids), self.spec.pad_id, dtype=np.int64)])
        return ids.reshape(1, -1)

    def ids_bytes(self, text: str) -> bytes:
        """The ids of one text, truncated, as int64 bytes (`as_ids` reads them)."""
        text = normalize(text, self.spec.lowercase, self.spec.digits_to_zero)
        if self.by_word:
            return self._encode_by_word(text, self.spec.max_length)
        return as_bytes(self.tokenizer.encode(text, out_type=int)[: self.spec.max_length])

    def encode(self, texts: list[str]) -> list[list[int]]:
        # One call per text: sentencepiece's list API starts a thread pool per call, which costs
        # ~0.4 ms even with num_threads=1, far more than tokenizing a short text (~5 us).
        return [self.encode_one(text) for text in texts]

    def pad(self, batch_ids: list[list[int]]) -> np.ndarray:
        """int64 [len(batch_ids), max(min_length, longest)] padded with pad_id."""
        spec = self.spec
        width = max(spec.min_length, max(map(len, batch_ids), default=0))
        padded = np.full((len(batch_ids), width), spec.pad_id, dtype=np.int64)
        for row, ids in enumerate(batch_ids):
            padded[row, : len(ids)] = ids
        return padded

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Encoded and padded: one batch ready for the model."""
        return self.pad(self.encode(texts))

    def _encode_by_word(self, text: str, limit: int) -> bytes:
        """The first `limit` ids of a normalized text, word by word, as int64 bytes. Only the first `limit` words are
        split off at a time (a word has at least one id, bar the rare one that normalizes to nothing),
        so a 1 MB text costs little more than a short one."""
        # str.split also splits at other whitespace, which sentencepiece may delete (\x0b, \x1c-\x1f) or
        # keep as a character (\x85): a text holding any is split at sentencepiece's own spaces only.
        odd = _has_odd_space(text)
        parts: list[bytes] = []
        count, rest = 0, text
        while rest and count < limit:
            words = _SPACES.split(rest, maxsplit=limit) if odd else rest.split(maxsplit=limit)
            rest = words.pop() if len(words) > limit else ""
            parts.append(self._words([word for word in words if word] if odd else words))
            count += len(parts[-1]) // ID_BYTES
        ids = parts[0] if len(parts) == 1 else b"".join(parts)
        return ids[: limit * ID_BYTES] if count > limit else ids

    def _words(self, words: list[str]) -> bytes:
        """The words' ids one after the other, each word's from the cache or else from sentencepiece (then cached)."""
        cache = self.word_ids
        found = list(map(cache.get, words))
        try:
            return b"".join(found)
        except TypeError:  # None: a word the cache does not hold
            pass
        # list.index scans in C: a few misses among hundreds of words are found faster than by a Python loop.
        missing, position = [], -1
        try:
            while True:
                position = found.index(None, position + 1)
                missing.append(position)
        except ValueError:
            pass
        new = self._tokenize_words({words[position] for position in missing})
        for position in missing:
            found[position] = new[words[position]]
        if len(cache) < MAX_CACHED_WORDS:
            cache.update((word, ids) for word, ids in new.items() if len(word) <= MAX_CACHED_WORD)
        return b"".join(found)

    def _tokenize_words(self, words: set[str]) -> dict[str, bytes]:
        """sentencepiece's ids for each word, as int64 bytes. Plain ASCII words start exactly one sentencepiece word
        each, so they all go through one call (a call costs ~1.6 us besides the text) and the ids are
        split again at the word starts; any other word gets a call of its own."""
        # Sorted: the order of a set of strings changes with each process's hash seed, and the ids must not.
        new, plain = {}, sorted(word for word in words if word.isascii() and word.isprintable())
        if plain:
            ids = self.tokenizer.encode(" ".join(plain), out_type=int)
            starts = [position for position, i in enumerate(ids) if self._starts_word[i]] + [len(ids)]
            if len(starts) == len(plain) + 1 and starts[0] == 0:
                raw = as_bytes(ids)
                new = {word: raw[starts[number] * ID_BYTES : starts[number + 1] * ID_BYTES] for number, word in enumerate(plain)}
        for word in words.difference(new):  # each alone: their order changes no id
            new[word] = as_bytes(self.tokenizer.encode(word, out_type=int))
        return new

    def _probe_agrees(self) -> bool:
        """The word-by-word path gives sentencepiece's own ids on a text built to trip it up (every kind
        of whitespace, accents composed and not, ligatures, emoji, control characters): a tokenizer
        that normalizes in some other way than sentencepiece's defaults is used whole."""
        whole = self.tokenizer.encode(PROBE, out_type=int)
        agrees = as_ids(self._encode_by_word(PROBE, len(whole) + 1)).tolist() == whole
        self.word_ids.clear()
        return agrees


MAX_CACHED_WORDS = 50_000
"""Words the cache holds (7.6 MB when full, filled from generated news); once it is full, new words are tokenized
every time they come."""
MAX_CACHED_WORD = 64
"""Longer words (URLs, unbroken runs of characters) are not cached."""
ID_BYTES = 8
"""Bytes of one id in the cache (int64, the model input's type, in this machine's byte order)."""
_SPACES = re.compile("[ \t\n\r]+")
# What str.split() splits at besides _SPACES.
_ODD_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_ASCII_ODD_SPACE = "\x0b\x0c\x1c\x1d\x1e\x1f"  # the ones of them in ASCII
PROBE = ("  Hello, World! It's 2024:\tthe £5 café\nnaïve e\u0301 ﬁne Σ İ ß\r\n spaced   out  a\xa0b c\u3000d \u200b "
         "x\x0by p\x1cq \x00 😀👍🏽 ▁ <unk> don't  ")


def _has_odd_space(text: str) -> bool:
    # str.isascii is free (CPython records it), and looking for 6 characters with `in` is ~30x faster than the regex.
    if text.isascii():
        return any(char in text for char in _ASCII_ODD_SPACE)
    return _ODD_SPACE.search(text) is not None


def as_bytes(ids: list[int]) -> bytes:
    """Ids as the word cache and `StudentInput.ids_bytes` hold them: int64 bytes (`as_ids` reads them back)."""
    return np.asarray(ids, dtype=np.int64).tobytes()


def as_ids(ids_bytes: bytes) -> np.ndarray:
    """int64 ids from `as_bytes` (read-only: a view of the bytes)."""
    return np.frombuffer(ids_bytes, dtype=np.int64)


def _words_are_independent(tokenizer, pieces: list[str]) -> bool:
    """True when no piece (of `pieces`, the tokenizer's, by id) holds a word-start mark anywhere but at its start
    (sentencepiece's default `split_by_whitespace`), and the mark itself is a known piece: then ids never span a
    space, and a text's ids are its words' ids one after the other."""
    if tokenizer.piece_to_id(WORD_START) == tokenizer.unk_id():
        return False
    return all(WORD_START not in piece[1:] for piece in pieces)
