"""Stage `data`: read the labeled texts, clean them, and make the seeded splits every later stage uses.

DATA is a CSV/TSV/JSONL file with a text and a label column, a directory saved by `datasets`
(`save_to_disk`), or an embedded dataset name (`rotten-tomatoes`, `bbc-news`; see compressor.assets).
`per_class` reproduces the papers' low-data protocol: that many labeled examples per class are drawn
from the training pool, and the rest of the pool is kept only as `unlabeled.jsonl` (GAL's oracle).

Two texts are the same text when their `text_key`s are equal (whitespace collapsed, lowercased). DATA
keeps one copy of each exact text; a dev or test text split from DATA whose key is also in the training
pool is dropped (counted in the stage's metrics), so near-copies never straddle the split. A --dev/--test
file may not share a text with DATA or with the other file, else the accuracy it reports is partly
measured on training texts: such overlap is refused, or with `drop_overlap` dropped from dev/test.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gendistill.compressor import assets
from gendistill.compressor.rundir import begin_stage, finish_stage, write_jsonl_atomic
from gendistill.runtime.bundle import write_json_atomic
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.settings import Seeded
from gendistill.runtime.tables import LABEL_COLUMNS, TEXT_COLUMNS, pick_column, read_table, read_texts

log = logging.getLogger(__name__)

EMBEDDED_DATASETS = ("rotten-tomatoes", "bbc-news")


@dataclass
class DataSettings(Seeded):
    INTERNAL = ("source",)  # the DATA argument

    source: str = "rotten-tomatoes"
    """A file path, a `datasets` directory, or an embedded dataset name."""
    text_column: str | None = None
    """Column with the texts (detected if omitted)."""
    label_column: str | None = None
    """Column with the labels (detected if omitted)."""
    dev: str | None = None
    """Separate dev file, same columns (else a stratified split of DATA)."""
    test: str | None = None
    """Separate test file, same columns (else a stratified split of DATA)."""
    per_class: int | None = None
    """Labeled examples per class to keep (papers: 100); the rest of the training pool is only unlabeled text. Default: all."""
    dev_size: int = 200
    """Dev examples split from DATA when no --dev file is given (at most 10% of the data)."""
    test_size: int = 2000
    """Test examples split from DATA when no --test file is given (at most 20% of the data)."""
    unlabeled: str | None = None
    """A file of real unlabeled in-domain texts (CSV/TSV/JSONL with a text column, or .txt with one per line): the teacher labels them and the student distills on them beside the synthetic texts. Texts also in train/dev/test are dropped."""
    drop_overlap: bool = False
    """Drop texts of the --dev/--test files that also appear in DATA (or in the other file) instead of refusing them; the counts go into the data stage's metrics."""

    def validate(self):
        if not isinstance(self.source, str) or not self.source:
            raise GendistillError("DATA must be a file, a directory or an embedded dataset name.")
        self.at_least("per_class", 1)
        self.at_least("dev_size", 1)
        self.at_least("test_size", 1)


# --- reading ---------------------------------------------------------------------------------------


def text_key(text: str) -> str:
    """What makes two texts the same text: equal after collapsing whitespace and lowercasing. The one
    rule for DATA's dedupe, the dev/test overlap check and (compressor.synthesize) synthetic texts."""
    return " ".join(text.split()).lower()


def _read_datasets_dir(path: Path) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise GendistillError(f"{path} looks like a `datasets` directory; run `pip install datasets` to read it.") from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    names = loaded.features
    rows = loaded.to_list()
    # Class labels stored as ints get their names back.
    for column, feature in names.items():
        if isinstance(feature, datasets.ClassLabel):
            for row in rows:
                row[column] = feature.int2str(row[column])
    return rows


def _embedded(name: str) -> list[dict]:
    if name == "rotten-tomatoes":
        rows = read_table(assets.rotten_tomatoes_file())
        return [{"text": r["text"], "label": r["category"]} for r in rows if r["category"] in ("fresh", "rotten")]
    folder = assets.bbc_news_dir()
    rows = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = "sport" if label_dir.name == "sports" else label_dir.name
        for article in sorted(label_dir.glob("*.txt")):
            rows.append({"text": article.read_bytes().decode("utf-8", errors="replace"), "label": label})
    return rows


def read_labeled(source: str, text_column: str | None = None, label_column: str | None = None) -> tuple[list[str], list[str], dict]:
    """(texts, labels, counts of what was dropped) from any supported DATA."""
    if source in EMBEDDED_DATASETS:
        rows = _embedded(source)
        text_column, label_column = "text", "label"
    else:
        path = Path(source)
        if not path.exists():
            raise GendistillError(
                f"{source} does not exist; give a CSV/TSV/JSONL file, a `datasets` directory, or one of: {', '.join(EMBEDDED_DATASETS)}."
            )
        rows = _read_datasets_dir(path) if path.is_dir() else read_table(path)
    if not rows:
        raise GendistillError(f"{source} holds no rows; give a file with a header and labeled texts.")
    columns = list(rows[0].keys())
    text_column = pick_column(columns, text_column, TEXT_COLUMNS, "texts", "--text-column", source)
    label_column = pick_column(columns, label_column, LABEL_COLUMNS, "labels", "--label-column", source)
    if text_column == label_column:
        raise GendistillError(f"The text and label columns of {source} are both {text_column!r}; name them with --text-column and --label-column.")
    texts, labels, dropped = [], [], Counter()
    seen = set()
    for row in rows:
        text, label = row.get(text_column), row.get(label_column)
        if label is None or str(label).strip() == "":
            dropped["missing_label"] += 1
            continue
        if not isinstance(text, str) or not text.strip():
            dropped["empty_text"] += 1
            continue
        text = text.strip()
        # Exact copies go here; near-copies (case, whitespace) are kept apart by the split instead
        # (see `_drop_split_overlap`), which leaves the embedded datasets' seeded splits as they were.
        if text in seen:
            dropped["duplicate_text"] += 1
            continue
        seen.add(text)
        texts.append(text)
        labels.append(str(label).strip())
    return texts, labels, dict(dropped)


# --- splitting -------------------------------------------------------------------------------------


def stratified_take(labels: list[str], size: int, rng: np.random.RandomState) -> tuple[list[int], list[int]]:
    """Indices of a stratified sample of `size` (each class in proportion, at least one each) and the rest."""
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    total = len(labels)
    taken = []
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        share = max(1, round(size * len(members) / total))
        if share >= len(members):
            raise GendistillError(
                f"Class {label!r} has too few examples left ({len(members)}) to split off dev and test sets; add examples or pass --dev/--test files."
            )
        taken.extend(members[:share])
    taken_set = set(taken)
    return sorted(taken), [i for i in range(total) if i not in taken_set]


def resolve_overlap(settings: DataSettings, texts: list[str], extra: dict[str, tuple[list[str], list[str]]]) -> dict[str, int]:
    """Refuse the --dev/--test files' texts that are also in DATA, or in both files; with `drop_overlap`
    remove them from `extra` (in place) instead, and return how many went from each file."""
    data_keys = {text_key(text) for text in texts}
    test_keys = {text_key(text) for text in extra["test"][0]} if "test" in extra else set()
    counts = {}
    # The test file goes first and loses nothing to the dev file: its accuracy is the one reported.
    for name in ("test", "dev"):
        if name not in extra:
            continue
        file_texts, file_labels = extra[name]
        others = [(data_keys, f"{settings.source}, the training data", "its accuracy would partly be measured on training texts")]
        if name == "dev" and test_keys:
            others.append((test_keys, f"the {DataSettings.flag('test')} file", "choices made on dev would be tuned to test texts"))
        shared = set()
        for keys, where, harm in others:
            found = [i for i, text in enumerate(file_texts) if text_key(text) in keys]
            if found and not settings.drop_overlap:
                first = file_texts[found[0]]
                first = first if len(first) <= 60 else first[:57] + "..."
                raise GendistillError(
                    f"{_texts(len(found))} of the {DataSettings.flag(name)} file also {'appears' if len(found) == 1 else 'appear'} in {where} "
                    f"(first: {first!r}), so {harm}; remove them, "
                    f"or pass {DataSettings.flag('drop_overlap')} to drop them from dev/test."
                )
            shared.update(found)
        counts[name] = len(shared)
        if shared:
            if len(shared) == len(file_texts):
                raise GendistillError(f"Every text of the {DataSettings.flag(name)} file also appears in {settings.source} or the other file; give one with other texts.")
            keep = [i for i in range(len(file_texts)) if i not in shared]
            extra[name] = ([file_texts[i] for i in keep], [file_labels[i] for i in keep])
            log.info("Dropped %s of the %s file that also appear in %s.", _texts(len(shared)), DataSettings.flag(name),
                     " or ".join(where for _, where, _ in others))
    return counts


def _drop_split_overlap(splits: dict[str, list[int]], texts: list[str]) -> dict[str, int]:
    """Drop from the dev and test splits taken from DATA the texts whose `text_key` is also in the training
    pool (train + unlabeled), and from dev those also in test; returns how many went from each."""
    pool = {text_key(texts[i]) for name in ("train", "unlabeled") for i in splits.get(name, [])}
    test = {text_key(texts[i]) for i in splits.get("test", [])}
    counts = {}
    for name, others in (("test", pool), ("dev", pool | test)):
        if name in splits:
            kept = [i for i in splits[name] if text_key(texts[i]) not in others]
            counts[f"{name}_split"] = len(splits[name]) - len(kept)
            splits[name] = kept
    return counts


def _texts(count: int) -> str:
    return f"{count} text" if count == 1 else f"{count} texts"


def run_data(settings: DataSettings, run_dir: str | Path) -> dict:
    started = time.time()
    texts, labels, dropped = read_labeled(settings.source, settings.text_column, settings.label_column)
    if dropped.get("empty_text"):
        log.info("Dropped %d empty or whitespace-only texts.", dropped["empty_text"])
    label_names = sorted(set(labels))
    if len(label_names) < 2:
        raise GendistillError(f"{settings.source} has {len(label_names)} class ({', '.join(map(repr, label_names))}); a classifier needs at least 2.")
    rng = np.random.RandomState(settings.seed)
    splits: dict[str, list[int]] = {}
    pool = list(range(len(texts)))
    extra: dict[str, tuple[list[str], list[str]]] = {}
    for name, path, size, cap in (("test", settings.test, settings.test_size, 0.2), ("dev", settings.dev, settings.dev_size, 0.1)):
        if path:
            other_texts, other_labels, _ = read_labeled(path, settings.text_column, settings.label_column)
            extra[name] = (other_texts, other_labels)
        else:
            size = max(1, min(size, int(cap * len(texts))))
            pool_labels = [labels[i] for i in pool]
            taken, rest = stratified_take(pool_labels, size, rng)
            splits[name] = [pool[i] for i in taken]
            pool = [pool[i] for i in rest]
    pool_counts = Counter(labels[i] for i in pool)  # the training pool's classes, before --per-class evens them out
    overlap_dropped = resolve_overlap(settings, texts, extra)
    for name, (_, other_labels) in extra.items():
        unknown = sorted(set(other_labels) - set(label_names))
        if unknown:
            raise GendistillError(f"The {name} file has labels the training data lacks ({', '.join(map(repr, unknown[:5]))}); make both use the same label set.")
    if settings.per_class is not None:
        by_class: dict[str, list[int]] = {}
        for i in pool:
            by_class.setdefault(labels[i], []).append(i)
        labeled = []
        for label in label_names:
            members = by_class.get(label, [])
            if len(members) < settings.per_class:
                raise GendistillError(
                    f"Class {label!r} has only {len(members)} examples left for training, fewer than --per-class {settings.per_class}; lower --per-class or add data."
                )
            rng.shuffle(members)
            labeled.extend(members[: settings.per_class])
        labeled_set = set(labeled)
        splits["train"] = sorted(labeled)
        # Shuffled, so that its first N texts are a random sample (GAL's oracle uses a prefix).
        splits["unlabeled"] = [i for i in pool if i not in labeled_set]
        rng.shuffle(splits["unlabeled"])
    else:
        splits["train"], splits["unlabeled"] = pool, []
    overlap_dropped.update(_drop_split_overlap(splits, texts))
    user_unlabeled = None
    if settings.unlabeled:
        held = {text_key(texts[i]) for name in ("train", "dev", "test") for i in splits.get(name, [])}
        held |= {text_key(t) for other_texts, _ in extra.values() for t in other_texts}
        user_unlabeled, seen, given = [], set(), read_texts(settings.unlabeled)
        for text, _ in given:
            key = text_key(text)
            if key and key not in held and key not in seen:
                seen.add(key)
                user_unlabeled.append(text)
        overlap_dropped["unlabeled_file"] = len(given) - len(user_unlabeled)
        if not user_unlabeled:
            raise GendistillError(f"The --unlabeled file {settings.unlabeled} holds no texts besides those of the labeled data; give a file of other in-domain texts.")
        splits.pop("unlabeled", None)
    counts = Counter(labels[i] for i in splits["train"])
    if min(counts.get(label, 0) for label in label_names) < 1:
        raise GendistillError("Some class has no training examples after splitting; add data or pass a smaller --test-size/--dev-size.")

    out = begin_stage(run_dir, "data")
    for name, indices in splits.items():
        write_jsonl_atomic(out / f"{name}.jsonl", ({"text": texts[i], "label": labels[i]} for i in indices))
    for name, (other_texts, other_labels) in extra.items():
        write_jsonl_atomic(out / f"{name}.jsonl", ({"text": t, "label": y} for t, y in zip(other_texts, other_labels)))
    if user_unlabeled is not None:
        write_jsonl_atomic(out / "unlabeled.jsonl", ({"text": t} for t in user_unlabeled))
    write_json_atomic(out / "labels.json", label_names)
    sizes = {name: len(indices) for name, indices in splits.items()} | {name: len(t) for name, (t, _) in extra.items()}
    if user_unlabeled is not None:
        sizes["unlabeled"] = len(user_unlabeled)
    metrics = {"sizes": sizes, "dropped": dropped, "overlap_dropped": overlap_dropped, "train_per_class": dict(counts),
               "pool_per_class": {label: pool_counts.get(label, 0) for label in label_names},
               "seconds": time.time() - started}
    finish_stage(run_dir, "data", {**asdict(settings), "fingerprint": fingerprint(settings)}, metrics)
    return metrics


def fingerprint(settings: DataSettings) -> str:
    """SHA-256 of the input files, so a re-run on changed data is noticed."""
    digest = hashlib.sha256()
    for source in (settings.source, settings.dev, settings.test, settings.unlabeled):
        if source is None:
            continue
        path = Path(source)
        if source in EMBEDDED_DATASETS or not path.exists():
            digest.update(source.encode())
        elif path.is_file():
            digest.update(path.read_bytes())
        else:
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    digest.update(child.name.encode() + child.read_bytes())
    return digest.hexdigest()
