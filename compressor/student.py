"""The student: a tiny text classifier over sentencepiece subword embeddings.

Four architectures: as in generation-distillation section 4, `kim-cnn` (Kim 2014: filters of several
widths, max-over-time pooling, dropout) and `res-cnn` (a ResNet-style stack of residual 1D conv blocks);
`static` (model2vec's shape: a weighted mean of the subword vectors, L2-normalised, then a small MLP),
which ignores word order but learns from few texts without over-fitting its convolutions; and `bigru`
(the recurrent student of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks", with GRU cells: a bidirectional GRU max-pooled over time), which reads the whole text in order.

Padding is exact: the pad embedding is a fixed zero vector, every conv sees zero padding, and hidden
states at pad positions are masked to zero before pooling. A text therefore gets the same logits
alone or inside a padded batch, which is what lets the runtime batch freely and the browser match it.
Input: `input_ids` int64 [batch, seq]; output: `logits` float32 [batch, labels].
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gendistill.compressor.distill import ARCHITECTURES
from gendistill.runtime.preprocess import InputSpec, StudentInput, normalize


@dataclass
class StudentConfig:
    """Everything needed to rebuild a student and feed it text; saved as `student.json`."""

    architecture: str = "kim-cnn"
    vocab_size: int = 8000
    embed_dim: int = 100
    num_labels: int = 2
    num_filters: int = 100
    """kim-cnn: filters per kernel width."""
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    """kim-cnn: the filter widths; res-cnn uses the first one for every block."""
    hidden: int = 100
    """res-cnn: channels of each residual block; static: the MLP's hidden units; bigru: GRU units per direction."""
    num_blocks: int = 3
    """res-cnn: number of residual blocks."""
    dropout: float = 0.5
    pad_id: int = 0
    max_length: int = 128
    """Texts are truncated to this many subword ids."""
    lowercase: bool = True
    digits_to_zero: bool = False

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {self.architecture!r}")
        if self.num_labels < 2:
            raise ValueError("a classifier needs at least 2 labels")

    @property
    def min_length(self) -> int:
        """Inputs are padded to at least the widest kernel (a Kim-CNN graph fails in onnxruntime on a
        shorter input); masking makes the padding exact."""
        return max(self.kernel_sizes)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(lowercase=self.lowercase, digits_to_zero=self.digits_to_zero, max_length=self.max_length,
                         min_length=self.min_length, pad_id=self.pad_id)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "StudentConfig":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


class KimCNN(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        # Right-only zero padding of k-1 gives one window per token, so a text's windows are the same
        # whatever padding follows it in the batch.
        self.convs = nn.ModuleList(
            nn.Sequential(nn.ConstantPad1d((0, k - 1), 0.0), nn.Conv1d(config.embed_dim, config.num_filters, k))
            for k in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.num_filters * len(config.kernel_sizes), config.num_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).unsqueeze(1).to(torch.float32)  # [B, 1, T]
        x = self.embedding(input_ids).transpose(1, 2)  # [B, E, T]
        # ReLU outputs are >= 0, so zeroing pad positions before the max equals masking them out.
        pooled = [(torch.relu(conv(x)) * mask).amax(dim=2) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


class StaticStudent(nn.Module):
    """pooled = sum_p w[p] E[p] / n over the text's pieces, L2-normalised x sqrt(dim); logits = MLP(pooled).

    `w` is a learned weight per piece (initialised to 1): the student learns which pieces matter.
    """

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.weight = nn.Embedding(config.vocab_size, 1, padding_idx=config.pad_id)
        nn.init.ones_(self.weight.weight)
        with torch.no_grad():
            self.weight.weight[config.pad_id] = 0.0
        self.scale = float(config.embed_dim) ** 0.5
        self.hidden = nn.Linear(config.embed_dim, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, config.num_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).unsqueeze(2).to(torch.float32)  # [B, T, 1]
        summed = (self.embedding(input_ids) * self.weight(input_ids) * mask).sum(1)
        pooled = summed / mask.sum(1).clamp(min=1.0)
        pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-6) * self.scale
        return self.classifier(self.dropout(torch.relu(self.hidden(self.dropout(pooled)))))

    def onnx_module(self) -> nn.Module:
        """What the ONNX export traces instead of `forward`: the same function in fewer operations."""
        return _StaticGraph(self)


class _StaticGraph(nn.Module):
    """`StaticStudent` as exported: each piece's vector already multiplied by its weight, so one table and one lookup;
    no padding mask (the padding piece's weight is 0, so its row of that table is 0); no division by the number of
    pieces (the L2 normalisation right after cancels it). The same logits up to float rounding (the export checks
    them against `StaticStudent.forward`). Its int8 graph has 11 operations instead of 22, and onnxruntime ran it on
    450-piece articles in 0.036-0.038 ms instead of 0.068-0.071 (benchmarks/student/word-cache.json)."""

    def __init__(self, student: StaticStudent):
        super().__init__()
        with torch.no_grad():
            table = student.embedding.weight * student.weight.weight
            table[student.pad_id] = 0.0
        self.table = nn.Embedding.from_pretrained(table.detach().clone(), freeze=True)
        self.scale = student.scale
        self.hidden = student.hidden
        self.classifier = student.classifier

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        summed = self.table(input_ids).sum(1)
        pooled = summed / summed.norm(dim=1, keepdim=True).clamp(min=1e-6) * self.scale
        return self.classifier(torch.relu(self.hidden(pooled)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        left = (kernel_size - 1) // 2
        self.conv1 = nn.Sequential(nn.ConstantPad1d((left, kernel_size - 1 - left), 0.0), nn.Conv1d(channels, channels, kernel_size))
        self.conv2 = nn.Sequential(nn.ConstantPad1d((left, kernel_size - 1 - left), 0.0), nn.Conv1d(channels, channels, kernel_size))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x)) * mask
        h = self.conv2(self.dropout(h)) * mask
        return torch.relu(x + h)


class ResCNN(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.pad_id = config.pad_id
        k = config.kernel_sizes[0]
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.project = nn.Conv1d(config.embed_dim, config.hidden, 1)
        self.blocks = nn.ModuleList(ResidualBlock(config.hidden, k, config.dropout) for _ in range(config.num_blocks))
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, config.num_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).unsqueeze(1).to(torch.float32)
        h = torch.relu(self.project(self.embedding(input_ids).transpose(1, 2))) * mask
        for block in self.blocks:
            h = block(h, mask) * mask
        return self.classifier(self.dropout(h.amax(dim=2)))


class BiGRU(nn.Module):
    """A GRU reads the text forwards and another reads it backwards; their states are max-pooled over time.

    Padding stays exact: the backward GRU reads each text reversed within its own length (pads still last), so no
    pad reaches a real position in either direction. Its ONNX graph (`export.onnx_export.bigru_graph`) is one
    bidirectional GRU node given each text's length, which does the same.
    """

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.forward_gru = nn.GRU(config.embed_dim, config.hidden, batch_first=True)
        self.backward_gru = nn.GRU(config.embed_dim, config.hidden, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden, config.num_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.states(input_ids).amax(dim=1)))

    def states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T, 2 * hidden]: both GRUs' states at each piece, shifted by 1 (so > 0) at real positions, 0 at pads."""
        mask = input_ids != self.pad_id  # [B, T]
        lengths = mask.sum(1, keepdim=True)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        # Position t of the reversed text holds piece length-1-t; pads map to themselves, so they stay last.
        reverse = torch.where(positions < lengths, lengths - 1 - positions, positions).unsqueeze(2)  # [B, T, 1]
        x = self.embedding(input_ids)  # [B, T, E]
        ahead, _ = self.forward_gru(x)
        behind, _ = self.backward_gru(x.gather(1, reverse.expand(-1, -1, x.shape[2])))
        behind = behind.gather(1, reverse.expand(-1, -1, behind.shape[2]))  # back into the text's order
        # GRU states lie in (-1, 1): shifted by 1 they are > 0 at real positions, so zeroing pads before the max masks them.
        return (torch.cat([ahead, behind], dim=2) + 1.0) * mask.unsqueeze(2).to(torch.float32)

    def onnx_graph(self):
        """This model as ONNX (export_fp32 saves it instead of tracing): one bidirectional GRU node given the lengths."""
        from gendistill.export.onnx_export import bigru_graph

        return bigru_graph(self)


def build_student(config: StudentConfig) -> nn.Module:
    return {"kim-cnn": KimCNN, "res-cnn": ResCNN, "static": StaticStudent, "bigru": BiGRU}[config.architecture](config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_student(model: nn.Module, config: StudentConfig, directory: str | Path) -> None:
    """Write `student.json` + `student.safetensors` (no pickle)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / "student.json")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(directory / "student.safetensors"))


def load_student(directory: str | Path) -> tuple[nn.Module, StudentConfig]:
    from safetensors.torch import load_file

    directory = Path(directory)
    config = StudentConfig.load(directory / "student.json")
    model = build_student(config)
    model.load_state_dict(load_file(str(directory / "student.safetensors")))
    model.eval()
    return model, config


# --- tokenizer -------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], model_prefix: str | Path, vocab_size: int, lowercase: bool = True,
                    digits_to_zero: bool = False) -> Path:
    """Train a sentencepiece BPE model on `texts`; returns the `.model` path.

    pad=0, unk=1 and no BOS/EOS: no control token can appear in an encoding, so every runtime that
    loads this one file produces the same ids (golden.jsonl checks it in each). Its normalisation rules are slimmed
    (`slim_normalizer`).
    """
    import io

    import sentencepiece as spm

    sentences = [normalize(t, lowercase, digits_to_zero) for t in texts if t.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        character_coverage=0.9995,
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model.getvalue())
    slim_normalizer(proto)
    path = Path(f"{model_prefix}.model")
    path.write_bytes(proto.SerializeToString())
    return path


TEACHER_WORD_STARTS = ("\u2581", "\u0120")
"""How a sentencepiece or byte-level BPE teacher marks a word's first piece ("\u2581good", "\u0120good"); WordPiece marks
the other pieces instead ("##ing")."""


SCORE_GRID = 64
"""Scores of the teacher-vocabulary tokenizer's pieces are multiples of 1 / SCORE_GRID (`teacher_vocabulary_tokenizer`)."""
MIN_CHARACTER_COUNT = 3
"""A character becomes a piece of the teacher-vocabulary tokenizer only if the texts hold it at least this often. The
demo's texts held 463 characters, 286 of them fewer than 3 times and in no longer piece (stray letters of synthetic
texts: Hebrew, Thai, Greek, arrows), each a row of the student's table and, with its compositions, of the tokenizer's
normalisation rules: 61 kB of the 1.11 MB bundle. Such a character now reads as <unk>, as in the BPE tokenizer (whose
trainer keeps the characters covering 99.95% of the text). Measured level on the demo's run
(benchmarks/student/RESULTS.md, "Rare characters")."""


def teacher_vocabulary_tokenizer(texts: list[str], model_prefix: str | Path, vocab_size: int, teacher_dir: str | Path,
                                 lowercase: bool = True, digits_to_zero: bool = False) -> Path:
    """A sentencepiece model whose pieces are the teacher's own wordpieces, as they occur in `texts`; returns its path.

    Each word of the texts (split at spaces) is cut by the teacher's tokenizer; its first wordpiece becomes a word-start
    piece ("\u2581good") and the rest, "##" dropped, continuation pieces. The `vocab_size` most frequent of them (room
    that few texts leave is filled with the rest of the teacher's vocabulary, scored below them), and every character
    seen at least `MIN_CHARACTER_COUNT` times (so that a text has a cut, spelt out where nothing else fits; a rarer
    character reads as <unk>), make a unigram model scored by log frequency.
    A piece then maps to exactly one vector of the teacher's table, where a piece the BPE trainer made ("\u2581unf" +
    "un" + "ny" for "unfunny") gets the mean of several. No piece holds a word start past its first character, so the
    runtime's word-by-word cache still gives sentencepiece's own ids. Built by editing a trained model's proto (the
    `protobuf` that `onnx` installs reads it), so it loads with the same normalisation in every runtime (its rules
    slimmed by `slim_normalizer`).
    """
    import collections
    import io
    import math
    import unicodedata

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(teacher_dir)
    sentences = [normalize(t, lowercase, digits_to_zero) for t in texts if t.strip()]
    words = collections.Counter(w for sentence in sentences for w in sentence.split())
    counts, characters = collections.Counter(), collections.Counter()
    for word, times in words.items():
        for c in word:
            if not unicodedata.category(c).startswith("C"):  # no control characters
                characters[c] += times
        surface = [piece.removeprefix("##") for piece in teacher.tokenize(word)]
        if surface:
            for mark in TEACHER_WORD_STARTS:
                surface[0] = surface[0].removeprefix(mark)
        if "".join(surface) != word:  # the teacher's tokenizer changed it (accents, unknown): spelt out instead
            continue
        counts["\u2581" + surface[0]] += times
        for piece in surface[1:]:
            counts[piece] += times
    # A small trained model gives a valid proto: its normaliser and special pieces are kept, its pieces replaced.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences[:2000]), model_writer=model, model_type="unigram", vocab_size=100, pad_id=0, unk_id=1,
        bos_id=-1, eos_id=-1, character_coverage=0.98, hard_vocab_limit=False, num_threads=2, minloglevel=2,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(model.getvalue())
    specials = [piece for piece in proto.pieces if piece.type != pb.ModelProto.SentencePiece.NORMAL]
    del proto.pieces[:]
    proto.pieces.extend(specials)
    # Scores on a grid of 1/64: sentencepiece sums a path's scores in float32, and log-frequencies tie (counts 2 x 3 and
    # 6 x 1 cut a word two ways at one score) or nearly tie, so the running sum's rounding picked one cut after a long
    # prefix and the other alone; the runtime tokenizes word by word and the browser whole texts, so they disagreed on
    # about one text in 10,000, and the runtime's choice followed Python's per-process string hashing. On the grid
    # every sum up to 2**18 in size is exact, a tie is broken by piece order alone, and a word cuts the same anywhere.
    def on_grid(score: float) -> float:
        return round(score * SCORE_GRID) / SCORE_GRID

    # sentencepiece refuses a model that defines a piece twice ("\u2581 is already defined"), and texts can hold what
    # another source also adds: a literal "\u2581" among the characters, a continuation piece spelling "<unk>".
    taken = {piece.piece for piece in specials}

    def add(piece: str, score: float) -> bool:
        if piece in taken:
            return False
        proto.pieces.add(piece=piece, score=on_grid(score), type=pb.ModelProto.SentencePiece.NORMAL)
        taken.add(piece)
        return True

    total = max(1, sum(counts.values()))
    room = max(0, vocab_size - len(specials))
    for piece, times in counts.most_common():
        if room <= 0:
            break
        room -= add(piece, math.log(times / total))
    # Few texts (a few hundred have ~2,000 distinct wordpieces) leave room: the rest of the teacher's vocabulary fills it,
    # in the teacher's own order (frequency-like in BERT's), scored below every piece seen, so that a word the texts
    # never had is still cut into the teacher's pieces rather than spelt out.
    rank = 0
    for piece in _teacher_pieces(teacher, lowercase):
        if room <= 0:
            break
        if add(piece, math.log(0.5 / total) - 1e-4 * rank):
            room, rank = room - 1, rank + 1
    floor = math.log(1 / total) - 10.0  # a character alone is the last resort
    for piece in ["\u2581", *sorted(c for c, times in characters.items() if times >= MIN_CHARACTER_COUNT)]:
        add(piece, floor)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    slim_normalizer(proto)
    path = Path(f"{model_prefix}.model")
    path.write_bytes(proto.SerializeToString())
    return path


def _teacher_pieces(teacher, lowercase: bool) -> list[str]:
    """The teacher tokenizer's ordinary pieces in id order, written as sentencepiece pieces: word starts marked with
    "\u2581", continuations bare. WordPiece marks continuations ("##ing"); sentencepiece and byte-level BPE mark word
    starts ("\u2581the", "\u0120the")."""
    import unicodedata

    vocab = teacher.get_vocab()
    special = set(teacher.all_special_tokens)
    wordpiece = any(token.startswith("##") for token in vocab)
    pieces = []
    for token in sorted(vocab, key=vocab.get):
        if token in special or (token.startswith("[") and token.endswith("]")) or (token.startswith("<") and token.endswith(">")):
            continue
        if wordpiece:
            piece = token[2:] if token.startswith("##") else "\u2581" + token
        else:
            piece = "\u2581" + token[1:] if token[:1] in TEACHER_WORD_STARTS else token
        surface = piece.removeprefix("\u2581")
        if not surface or any(c.isspace() or unicodedata.category(c).startswith("C") for c in surface) or (lowercase and surface != surface.lower()):
            continue
        pieces.append(piece)
    return pieces


def slim_normalizer(proto) -> None:
    """Keep only the normalisation rules of a sentencepiece model (a `ModelProto`, changed in place) that can change
    its ids: the same ids for every text, in a quarter of the bytes or less.

    sentencepiece stores its NFKC rules (`nmt_nfkc`: 225,276 of them, "ｆｕｌｌ" -> "full", "e" + U+0301 -> "é", ...) in
    every model, 240 kB of the demo's 392 kB tokenizer.model, itself 30% of the bundle a phone downloads. Most map
    characters the model has no piece for (CJK compatibility forms, Hangul, Arabic presentation forms) to others it has
    none for either, and a run of characters with no piece becomes one <unk> whatever they are. So a rule can go when
    neither side holds a character of any piece or whitespace, and its target is not empty (a rule that deletes
    characters stays), and when no kept rule could match inside its source or from a point inside it (else dropping
    it would let that shorter rule apply where the longer one won before); the last condition is applied until
    nothing changes. What is left (34,316 rules, 55 kB, on the demo's tokenizer when every character of its texts was a
    piece; 26 kB since the rare ones are not, `MIN_CHARACTER_COUNT`) is compiled by sentencepiece's own trainer into a
    `user_defined` normaliser, read the same way by every runtime (Python and the browser's wasm); the
    test suite checks the ids against the full rules on every rule's source in context and on random text.
    """
    spec = proto.normalizer_spec
    if not spec.precompiled_charsmap:
        return
    rules = charsmap_rules(spec.precompiled_charsmap)
    characters = {c for piece in proto.pieces for c in piece.piece}

    def inert(text: str) -> bool:  # no character a piece holds, no whitespace
        return not any(c in characters or c.isspace() for c in text)

    dropped = {source for source, target in rules.items() if target and inert(source) and inert(target)}
    while True:
        kept = rules.keys() - dropped
        starts = {source[:end] for source in kept for end in range(1, len(source) + 1)}  # what a kept rule's source begins with
        # Unsafe: from some point inside the source, a kept rule's source begins with the rest of it, or is a prefix of it.
        unsafe = {source for source in dropped
                  if any(source[i:] in starts or any(source[i:j] in kept for j in range(i + 1, len(source))) for i in range(len(source)))}
        if not unsafe:
            break
        dropped -= unsafe
    compiled = compile_normalizer({source: target for source, target in rules.items() if source not in dropped})
    spec.name, spec.precompiled_charsmap = compiled.name, compiled.precompiled_charsmap


@functools.lru_cache(maxsize=2)  # a run builds two tokenizers (both students') on the same nmt_nfkc rules: decoded once
def charsmap_rules(charsmap: bytes) -> dict[str, str]:
    """Every rule (source -> target) of a sentencepiece precompiled charsmap: a 4-byte size, a darts-clone double array
    over the sources' UTF-8 bytes (a leaf's value is an offset into the targets), then the NUL-terminated targets.
    Written here because sentencepiece can compile such a map but not list one; `compile_normalizer(charsmap_rules(m))`
    gives `m` back byte for byte (tested). The dict is shared (cached): do not change it."""
    size = int.from_bytes(charsmap[:4], "little")
    units = np.frombuffer(charsmap[4: 4 + size], dtype="<u4").astype(np.int64)
    targets = charsmap[4 + size:]
    # darts-clone's unit layout: a child's label, whether it ends a key, the offset to its children, a leaf's value.
    label, has_leaf = units & ((1 << 31) | 0xFF), (units >> 8) & 1
    offset, value = (units >> 10) << ((units & (1 << 9)) >> 6), units & ((1 << 31) - 1)
    labels = np.arange(1, 256)
    rules: dict[str, str] = {}
    positions, keys = np.array([offset[0]]), [b""]
    while len(positions):  # breadth first: every node's children at once
        children = positions[:, None] ^ labels[None, :]
        found = children < len(units)
        found[found] = label[children[found]] == np.broadcast_to(labels, children.shape)[found]
        parents, columns = np.nonzero(found)
        children = children[parents, columns]
        positions = children ^ offset[children]
        keys = [keys[parent] + bytes((int(labels[column]),)) for parent, column in zip(parents.tolist(), columns.tolist())]
        for key, child, position in zip(keys, children.tolist(), positions.tolist()):
            if has_leaf[child]:
                start = int(value[position])
                rules[key.decode("utf-8")] = targets[start: targets.index(b"\0", start)].decode("utf-8")
    return rules


def compile_normalizer(rules: dict[str, str]):
    """sentencepiece's `NormalizerSpec` for these rules (source -> target), compiled by its trainer from a rule file on
    a throwaway model."""
    import io
    import tempfile

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    with tempfile.TemporaryDirectory() as work:
        table = Path(work) / "rules.tsv"
        table.write_text("".join(" ".join(f"{ord(c):X}" for c in source) + "\t" + " ".join(f"{ord(c):X}" for c in target) + "\n"
                                 for source, target in rules.items()), encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c"] * 10), model_writer=model, model_type="unigram", vocab_size=10,
                                       normalization_rule_tsv=str(table), hard_vocab_limit=False, minloglevel=2, num_threads=1)
    proto = pb.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec


def student_input(student_dir: str | Path, config: StudentConfig) -> StudentInput:
    """The runtime's input path (normalize, encode, truncate, pad) over the student's tokenizer.model."""
    return StudentInput.load(Path(student_dir) / "tokenizer.model", config.input_spec)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: StudentInput, texts: list[str], batch_size: int = 256) -> np.ndarray:
    model.eval()
    chunks = [model(torch.from_numpy(inputs(texts[i : i + batch_size]))).numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.classifier.out_features), dtype=np.float32)
