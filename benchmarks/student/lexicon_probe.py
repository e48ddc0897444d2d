"""Do the teacher's verdicts on single pieces and short phrases add anything to a trained student?

    python benchmarks/student/lexicon_probe.py runs/demo benchmarks/student/lexicon.json \\
        runs/demo/student-ablation/bigru_teacher_synthetic/seed{0,1,2,3,4,5}/bundle

A diagnostic, not a pipeline choice. The teacher (the run's fine-tuned encoder and linear head, torch) reads
- every piece of the student's vocabulary alone (the `teacher-output` recipe of the student's vectors), and
- every two- and three-word phrase seen in at least two of the run's transfer texts (synthetic + labeled training texts);
each gets the teacher's logit difference (last label minus first). A review's *lexicon score* is the mean over its
pieces (or its known phrases). For each student bundle given, the score is added to the student's own logit
difference with a weight fitted on the dev split (by log-loss, 0 allowed), and test accuracy is compared with the
student alone; the weight chosen on test is reported too, as the most the score could add. Two-label runs only.
Also printed: the student's agreement with the teacher on test reviews with and without a contrast or negation word.
"""

import argparse
import collections
import json
import re
import sys
from pathlib import Path

import numpy as np

from gendistill.compressor.embeddings import piece_texts
from gendistill.compressor.encoder import batched, load_teacher_dir
from gendistill.compressor.rundir import load_labels, load_split, stage_path
from gendistill.compressor.synthesize import load_synthetic
from gendistill.runtime.classifier import Classifier

CONTRAST = re.compile(r"\b(but|not|n't|no|never|yet|though|although)\b")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def phrases(text: str) -> list[str]:
    w = words(text)
    return [" ".join(w[i : i + n]) for n in (2, 3) for i in range(len(w) - n + 1)]


def teacher_margins(teacher, texts: list[str], desc: str) -> np.ndarray:
    """The teacher's (`load_teacher_dir`'s model and tokenizer) logit difference, last label minus first, for each short text."""
    import torch

    model, tokenizer = teacher

    def compute(batch):
        encoded = tokenizer(batch, truncation=True, max_length=16, padding=True, return_tensors="pt")
        return model.raw_logits(encoded["input_ids"], encoded["attention_mask"]).float().numpy()

    with torch.inference_mode():
        logits = batched(texts, 256, 2, compute, desc)
    return logits[:, 1] - logits[:, 0]


def fitted_weight(student: np.ndarray, score: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    def log_loss(weight):
        p = 1 / (1 + np.exp(-(student + weight * score)))
        return -np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9))

    return float(min(weights, key=log_loss))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("bundles", nargs="+")
    args = parser.parse_args()
    if len(load_labels(args.run_dir)) != 2:
        sys.exit("lexicon_probe.py reads two-label runs only.")
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(args.bundles[0]) / "tokenizer.model"))
    teacher = load_teacher_dir(stage_path(args.run_dir, "teacher") / "model")
    pieces = piece_texts(sp)  # what the student's teacher-output vectors are made from
    piece_margin = np.zeros(sp.get_piece_size())
    piece_margin[list(pieces)] = teacher_margins(teacher, list(pieces.values()), "pieces")
    piece_margin[list(pieces)] -= np.median(piece_margin[list(pieces)])
    order = sorted(pieces, key=lambda i: piece_margin[i])

    transfer = load_synthetic(args.run_dir) + load_split(args.run_dir, "train")[0]
    counts = collections.Counter(p for text in transfer for p in set(phrases(text)))
    known = [p for p, c in counts.items() if c >= 2]
    phrase_margin = dict(zip(known, teacher_margins(teacher, known, "phrases")))
    middle = float(np.median(list(phrase_margin.values())))

    def piece_score(texts):
        pieces_of = [sp.encode(t.lower()) for t in texts]
        return np.array([piece_margin[ids].mean() if ids else 0.0 for ids in pieces_of])

    def phrase_score(texts):
        out = []
        for text in texts:
            found = [phrase_margin[p] - middle for p in phrases(text) if p in phrase_margin]
            out.append(float(np.mean(found)) if found else 0.0)
        return np.array(out)

    dev_texts, dev_y = load_split(args.run_dir, "dev")
    test_texts, test_y = load_split(args.run_dir, "test")
    dev_y, test_y = np.array(dev_y), np.array(test_y)
    teacher_test = np.load(stage_path(args.run_dir, "annotate") / "test.npy").argmax(1)
    contrast = np.array([CONTRAST.search(t.lower()) is not None for t in test_texts])
    scores = {"pieces": (piece_score(dev_texts), piece_score(test_texts), np.linspace(0, 40, 81)),
              "phrases": (phrase_score(dev_texts), phrase_score(test_texts), np.linspace(0, 10, 101))}
    result = {"run_dir": str(args.run_dir), "pieces": len(pieces), "phrases": len(known),
              "most_" + load_labels(args.run_dir)[0]: [pieces[i] for i in order[:20]],
              "most_" + load_labels(args.run_dir)[1]: [pieces[i] for i in order[-20:]][::-1],
              "score_alone_test_accuracy": {}, "students": {}}
    for name, (dev_score, test_score, _) in scores.items():
        threshold = max(np.unique(dev_score), key=lambda th: ((dev_score > th) == dev_y).mean())
        result["score_alone_test_accuracy"][name] = float(((test_score > threshold) == test_y).mean())
    for bundle in args.bundles:
        classifier = Classifier.load(bundle)
        dev_logits, test_logits = classifier.logits(dev_texts), classifier.logits(test_texts)
        dev_m, test_m = dev_logits[:, 1] - dev_logits[:, 0], test_logits[:, 1] - test_logits[:, 0]
        row = {"alone": float(((test_m > 0) == test_y).mean()),
               "agreement_contrast": float(((test_m > 0) == teacher_test)[contrast].mean()),
               "agreement_other": float(((test_m > 0) == teacher_test)[~contrast].mean())}
        for name, (dev_score, test_score, weights) in scores.items():
            weight = fitted_weight(dev_m, dev_score, dev_y, weights)
            row[name] = {"weight_by_dev": weight, "with_score": float(((test_m + weight * test_score > 0) == test_y).mean()),
                         "best_weight_on_test": max(float(((test_m + w * test_score > 0) == test_y).mean()) for w in weights)}
        result["students"][bundle] = row
        print(bundle, json.dumps(row))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
