"""Probe: real sentences of another domain as transfer text. Is what real reviews teach the student (+2.0 over 80,000
synthetic texts, +5 on the demo's run) that they are real text, or that they are reviews?

The sentences of the embedded bbc-news articles (2,225 articles of five topics, 36,157 such sentences; split at
". ", "? ", "! " and line ends, 5 to 40 words kept, copies and RUN's own texts dropped), COUNT of them drawn (seeded),
labeled by RUN's teacher (torch fp32). Two runs, RUN hard-linked, whose synthetic pool is (`probe_run.swap_and_replace`):

- OUT-mix:     RUN's first COUNT/2 synthetic texts + COUNT/2 news sentences;
- OUT-replace: COUNT news sentences alone.

    python benchmarks/student/corpus_probe.py runs/demo runs/demo-bbc --count 10000
    V=bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher
    for k in mix replace; do rm -rf runs/demo-bbc-$k/student-ablation   # runs/demo's students, hard-linked
      python benchmarks/student/ablate.py runs/demo-bbc-$k benchmarks/student/corpus/bbc-$k.json --seeds 3 --variant $V; done

Resumes: the sentences and their logits are kept in OUT-texts/ once made.
"""

import random
import re

from gendistill.compressor.data import read_labeled, text_key
from probe_run import known_texts, labeled_store, probe_parser, swap_and_replace  # benchmarks/student/probe_run.py


def news_sentences() -> list[str]:
    """The bbc-news articles' sentences of 5 to 40 words, each once, in article order."""
    texts, _, _ = read_labeled("bbc-news")
    sentences, seen = [], set()
    for article in texts:
        for sentence in re.split(r"(?<=[.?!])\s+|\n+", article):
            sentence, key = sentence.strip(), text_key(sentence)
            if 5 <= len(sentence.split()) <= 40 and key not in seen:
                seen.add(key)
                sentences.append(sentence)
    return sentences


def main():
    parser = probe_parser(10000)
    args = parser.parse_args()

    def make():
        known = {text_key(t) for t in known_texts(args.run_dir)}
        pool = [s for s in news_sentences() if text_key(s) not in known]
        return random.Random(args.seed).sample(pool, min(args.count, len(pool))), {"sentences": len(pool)}

    texts, logits, _ = labeled_store(args.run_dir, args.out, make, "news sentences")
    swap_and_replace(args.run_dir, args.out, texts, logits)


if __name__ == "__main__":
    main()
