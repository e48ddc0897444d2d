"""Pretrained initial vectors for the student's subword embeddings (generation-distillation uses BPEmb).

- `teacher`: each sentencepiece piece is split by the teacher's own WordPiece tokenizer and gets the
  mean of the teacher's input embeddings for those wordpieces, then PCA reduces 384 -> embed_dim.
  Works offline with any BERT-family teacher; the default.
- `teacher-output`: model2vec's recipe on our vocabulary: each piece's text is run through the teacher's
  encoder alone and pooled the teacher's way (its sentence vector for that piece), then PCA reduces
  768 -> embed_dim. Contextual knowledge in static vectors; costs one encoder pass over the vocabulary.
- `glove`: GloVe 6B 50d (packaged) for pieces that are whole words; the other dimensions random.
- `bpemb`: BPEmb's own sentencepiece model and vectors (local files, or the `bpemb` package online).
- `random`: N(0, 1), the ablation.
Every initialisation is scaled to unit variance (nn.Embedding's own scale) and the pad row is zero.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args
from pathlib import Path

import numpy as np

from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

Embeddings = Literal["teacher", "teacher-output", "glove", "bpemb", "random"]
EMBEDDINGS = get_args(Embeddings)
WORD_BOUNDARY = "\u2581"


def _pieces(sp) -> list[str]:
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def piece_texts(sp) -> dict[int, str]:
    """Each ordinary piece's text (word-start mark as a space, stripped), by id: what the teacher reads of it. Padding,
    control and unknown pieces, and pieces that are only the word-start mark, have none."""
    texts = {i: piece.replace(WORD_BOUNDARY, " ").strip() for i, piece in enumerate(_pieces(sp))
             if not (i == sp.pad_id() or sp.is_control(i) or sp.is_unknown(i))}
    return {i: text for i, text in texts.items() if text}


def _standardize(vectors: np.ndarray, known: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    out = rng.normal(0.0, 1.0, vectors.shape).astype(np.float32)
    if known.any():
        found = vectors[known]
        found = (found - found.mean(0)) / (found.std() + 1e-8)
        out[known] = found
    return out


def _pca(raw: np.ndarray, known: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """The known rows of `raw` reduced to `dim` principal components, standardized; the others random."""
    reduced = np.zeros((len(raw), dim), dtype=np.float32)
    if known.sum() > dim:
        centered = raw[known] - raw[known].mean(0)
        _, _, components = np.linalg.svd(centered, full_matrices=False)
        width = min(dim, len(components))  # a teacher narrower than dim fills the first dimensions
        reduced[np.ix_(known, np.arange(width))] = centered @ components[:width].T
    return _standardize(reduced, known, np.random.RandomState(seed))


def teacher_vectors(sp, teacher_dir: str | Path, dim: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """(vectors [pieces, dim], fraction of pieces the teacher's vocabulary covered)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    try:
        table = None
        weights = Path(teacher_dir) / "model.safetensors"
        if weights.is_file():
            with safe_open(str(weights), "pt") as handle:
                name = next((k for k in handle.keys() if k.endswith("word_embeddings.weight")), None)
                table = handle.get_tensor(name).float().numpy() if name else None
        if table is None:
            model = AutoModel.from_pretrained(teacher_dir, config=AutoConfig.from_pretrained(teacher_dir))
            table = model.get_input_embeddings().weight.detach().float().numpy()
    except OSError as exc:
        raise GendistillError(f"Could not read the teacher's embedding table from {teacher_dir}: {exc}") from None
    vocab = tokenizer.get_vocab()
    pieces = _pieces(sp)
    raw = np.zeros((len(pieces), table.shape[1]), dtype=np.float32)
    known = np.zeros(len(pieces), dtype=bool)
    for i, piece in enumerate(pieces):
        if i == sp.pad_id() or sp.is_control(i) or sp.is_unknown(i):
            continue
        word_start = piece.startswith(WORD_BOUNDARY)
        surface = piece.lstrip(WORD_BOUNDARY)
        if not surface:
            continue
        if not word_start and f"##{surface}" in vocab:
            ids = [vocab[f"##{surface}"]]
        else:
            ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(surface))
            ids = [j for j in ids if j != tokenizer.unk_token_id]
        if ids:
            raw[i] = table[ids].mean(0)
            known[i] = True
    return _pca(raw, known, dim, seed), float(known.mean())


def teacher_output_vectors(sp, teacher_dir: str | Path, dim: int, seed: int = 0, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """(vectors [pieces, dim], fraction of pieces encoded): the teacher encoder's pooled output for each piece."""
    import torch

    from gendistill.compressor.encoder import Pooling, batched, load_teacher_dir, pool

    model, tokenizer = load_teacher_dir(teacher_dir)
    surfaces = piece_texts(sp)
    ids, texts = list(surfaces), list(surfaces.values())

    def compute(batch):
        encoded = tokenizer(batch, truncation=True, max_length=16, padding=True, return_tensors="pt")
        if model.pooling:
            return model.embed(encoded["input_ids"], encoded["attention_mask"]).float().numpy()
        # a checkpoint with its own head: mean of its last hidden states
        states = model.encoder(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], output_hidden_states=True).hidden_states[-1]
        return pool(states, encoded["attention_mask"], Pooling("mean")).float().numpy()

    raw = np.zeros((sp.get_piece_size(), model.encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        raw[ids] = batched(texts, batch_size, raw.shape[1], compute, "student vectors from the teacher")
    known = np.zeros(len(raw), dtype=bool)
    known[ids] = True
    return _pca(raw, known, dim, seed), float(known.mean())


def glove_vectors(sp, dim: int, seed: int = 0) -> tuple[np.ndarray, float]:
    import pandas as pd

    from gendistill.compressor.assets import glove_files

    vectors_path, index_path = glove_files()
    index = pd.read_parquet(index_path)
    words = index.iloc[:, 0].astype(str).tolist() if index.shape[1] == 1 else index["word"].astype(str).tolist()
    row_of = {w: i for i, w in enumerate(words)}
    glove = np.load(vectors_path, mmap_mode="r")
    pieces = _pieces(sp)
    found = np.zeros((len(pieces), glove.shape[1]), dtype=np.float32)
    known = np.zeros(len(pieces), dtype=bool)
    for i, piece in enumerate(pieces):
        row = row_of.get(piece.lstrip(WORD_BOUNDARY)) if i != sp.pad_id() else None
        if row is not None:
            found[i] = glove[row]
            known[i] = True
    rng = np.random.RandomState(seed)
    out = rng.normal(0.0, 1.0, (len(pieces), dim)).astype(np.float32)
    width = min(dim, glove.shape[1])
    out[:, :width] = _standardize(found[:, :width], known, rng)
    return out, float(known.mean())


def read_word2vec(path: str | Path) -> dict[str, np.ndarray]:
    """word2vec text or binary format (BPEmb ships `.w2v.bin`, or `.w2v.txt`)."""
    path = Path(path)
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    try:
        count, dim = map(int, header.split())
    except ValueError:
        raise GendistillError(f"{path} is not a word2vec file (its first line must be '<count> <dim>').") from None
    vectors = {}
    if path.suffix == ".bin":
        offset = 0
        for _ in range(count):
            end = body.index(b" ", offset)
            word = body[offset:end].decode("utf-8", errors="replace").strip()
            start = end + 1
            vectors[word] = np.frombuffer(body[start : start + 4 * dim], dtype=np.float32).copy()
            offset = start + 4 * dim
            if offset < len(body) and body[offset : offset + 1] == b"\n":
                offset += 1
    else:
        for line in body.decode("utf-8").splitlines():
            parts = line.rstrip().split(" ")
            if len(parts) == dim + 1:
                vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    return vectors


def bpemb_vectors(sp, vectors_path: str | Path, dim: int, seed: int = 0) -> tuple[np.ndarray, float]:
    table = read_word2vec(vectors_path)
    pieces = _pieces(sp)
    width = len(next(iter(table.values())))
    found = np.zeros((len(pieces), width), dtype=np.float32)
    known = np.zeros(len(pieces), dtype=bool)
    for i, piece in enumerate(pieces):
        if piece in table and i != sp.pad_id():
            found[i], known[i] = table[piece], True
    rng = np.random.RandomState(seed)
    out = rng.normal(0.0, 1.0, (len(pieces), dim)).astype(np.float32)
    out[:, : min(dim, width)] = _standardize(found, known, rng)[:, : min(dim, width)]
    return out, float(known.mean())


def initial_vectors(kind: str, sp, dim: int, *, teacher_dir=None, bpemb_vectors_path=None, seed: int = 0) -> tuple[np.ndarray, float]:
    if kind == "teacher":
        vectors, coverage = teacher_vectors(sp, teacher_dir, dim, seed)
    elif kind == "teacher-output":
        vectors, coverage = teacher_output_vectors(sp, teacher_dir, dim, seed)
    elif kind == "glove":
        vectors, coverage = glove_vectors(sp, dim, seed)
    elif kind == "bpemb":
        vectors, coverage = bpemb_vectors(sp, bpemb_vectors_path, dim, seed)
    elif kind == "random":
        vectors, coverage = np.random.RandomState(seed).normal(0.0, 1.0, (sp.get_piece_size(), dim)).astype(np.float32), 0.0
    else:
        raise GendistillError(f"--embeddings must be one of {', '.join(EMBEDDINGS)}, not {kind!r}.")
    vectors[sp.pad_id()] = 0.0
    return vectors, coverage
