"""Text normalisation applied before the student's sentencepiece tokenizer.

Training (compressor), export and the runtime all call this one function, with the settings that
`bundle.json` records, so the ids a device sees are the ids the student was trained on.
The browser demo re-implements exactly these two steps (see mobile_demo/app.js).
"""

import re

_DIGIT = re.compile(r"[0-9]")


def normalize(text: str, lowercase: bool = True, digits_to_zero: bool = False) -> str:
    """Lowercase and/or map ASCII digits to 0 (BPEmb's preprocessing), nothing else.

    Unicode normalisation is left to sentencepiece (its model carries its own NFKC rules).
    """
    if lowercase:
        text = text.lower()
    if digits_to_zero:
        text = _DIGIT.sub("0", text)
    return text
