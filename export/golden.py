"""golden.jsonl: text -> ids -> probabilities that every runtime must reproduce (tokenizer parity).

Real test texts plus the strings where tokenizers and runtimes tend to disagree: unicode, emoji,
odd whitespace, very long input, input that normalises or tokenizes to nothing, and literal text of
sentencepiece control tokens. A runtime that matches all of them feeds the model what training fed it.
"""

from __future__ import annotations

from pathlib import Path

from gendistill.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from gendistill.runtime.bundle import json_line
from gendistill.runtime.classifier import softmax

EDGE_CASES = [
    # empty, or nothing left once sentencepiece drops whitespace: the runtime feeds [pad] * min_length
    "", " ", "   ", "\t", "\n", "\r\n", " \t\n ", "\u00a0", "\u200b", "\u3000",
    # whitespace around and inside text
    "  leading spaces", "trailing spaces   ", "multiple    spaces   inside", "tab\tseparated\twords",
    "new\nline\nseparated", "carriage\r\nreturn", " \t mixed \n whitespace \t ",
    # case and digits (lowercasing and digit mapping are the runtime's job)
    "UPPER CASE HEADLINE", "MiXeD CaSe TeXt", "0123456789", "Shares rose 12.5% to $1,234.56 in 2024",
    "call 555-0199 at 10:30", "١٢٣ ٤٥٦", "²³ ½ ⅞",
    # accents, precomposed and combining
    "café naïve résumé façade", "cafe\u0301 nai\u0308ve", "Ångström Øresund Łódź", "straße STRASSE",
    "İstanbul ıi", "ﬁnance ﬂow", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    # other scripts
    "東京の株式市場は上昇した", "中文新闻标题：科技公司发布新手机", "한국어 뉴스 기사", "Привет, мир! Новости спорта",
    "مرحبا بالعالم، أخبار الاقتصاد", "שלום עולם", "नमस्ते दुनिया", "Γειά σου Κόσμε", "ไทย ภาษา",
    # emoji: single, joined sequences, flags, skin tones, variation selectors
    "😀", "great match ⚽🏆🔥", "👨‍👩‍👧‍👦 family", "🇬🇧 🇺🇸 🇯🇵", "👍🏽 ok", "❤️ love", "🤖💻📱 tech news",
    # punctuation, symbols, markup, control-looking text
    "!!!", "...", "?!?!", "-- -- --", "@user #hashtag http://example.com/a?b=1&c=2",
    "<b>bold</b> &amp; <i>html</i>", "quotes \"double\" 'single' «guillemets» „low“",
    "back\\slash and /slash/", "{\"json\": [1, 2, 3]}",
    # literal text of sentencepiece control and special tokens must be tokenized as plain text
    "<pad>", "<unk>", "<s>", "</s>", "<pad> <unk> <s> </s>", "[CLS] [SEP] [MASK]", "▁", "▁▁ ▁word",
    # odd code points
    "\ufeffbyte order mark", "zero\u200bwidth\u200djoiner", "\x07bell \x1bescape",
    "surrogate-free 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
]


def golden_texts(test_texts: list[str], size: int, long_text_source: str) -> list[str]:
    """About `size` distinct strings: the edge cases, long inputs, real test texts, then variants of them.

    Variants (upper-cased, re-spaced, with digits or emoji) fill up to `size` when the test split is small.
    """
    long_texts = [
        " ".join([long_text_source] * 40),  # far more ids than max_length: truncation must match
        (long_text_source + " ") * (3000 // max(1, len(long_text_source) + 1) + 1),
        "x" * 3000,
        "😀" * 500,
    ]
    long_texts[1] = long_texts[1][:3000]  # the ~3000-character string
    texts = EDGE_CASES + long_texts + list(test_texts)
    variants = (
        lambda t: t.upper(),
        lambda t: "  " + "   ".join(t.split()) + "\t\n",
        lambda t: f"{t} 42 in 2024",
        lambda t: f"{t} 🚀",
    )
    for variant in variants:
        if len(set(texts)) >= size:
            break
        texts += [variant(t) for t in test_texts]
    unique = list(dict.fromkeys(texts))
    return unique[: max(size, len(EDGE_CASES) + len(long_texts))]


def golden_rows(texts: list[str], inputs, onnx_session) -> list[dict]:
    """One row per text, each run alone (batch 1, padded to min_length) as a device would run it."""
    rows = []
    for text, ids in zip(texts, inputs.encode(texts)):
        logits = onnx_session.run([OUTPUT_NAME], {INPUT_NAME: inputs.pad([ids])})[0]
        probabilities = softmax(logits)[0]
        rows.append({"text": text, "ids": [int(i) for i in ids], "probabilities": [float(p) for p in probabilities]})
    return rows


def write_golden(path: str | Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json_line(row) + "\n")
