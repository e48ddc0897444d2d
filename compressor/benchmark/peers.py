"""The rows a user would try instead of our student, trained on the same split: TF-IDF+SVM and
fastText (hyper-parameters chosen on dev), the teacher's encoder frozen + logistic regression (encoder-lr),
model2vec distilled from that encoder + logistic regression (model2vec-lr), SetFit, and the teacher itself."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from gendistill.compressor.benchmark.measure import files_bytes, median_ms, scores
from gendistill.runtime.errors import GendistillError

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
"""Regularisation strengths of the linear heads tuned on dev accuracy (TF-IDF+SVM, model2vec-lr)."""


def train_tfidf_svm(train_texts, train_y, dev_texts, dev_y, test_texts, test_y, num_labels: int, work_dir: Path,
                    latency_texts: list[str]) -> dict:
    """TF-IDF (sublinear tf) + LinearSVC; C in 10^-2..10^2 and n-grams (1,1)/(1,2) chosen on dev accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from gendistill.compressor.training import accuracy

    best = None
    for ngrams in ((1, 1), (1, 2)):
        vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True, lowercase=True)
        x_train, x_dev = vectorizer.fit_transform(train_texts), None
        x_dev = vectorizer.transform(dev_texts)
        for c in C_GRID:
            svm = LinearSVC(C=c, max_iter=10000).fit(x_train, train_y)
            dev_accuracy = accuracy(svm.predict(x_dev), dev_y)
            if best is None or dev_accuracy > best[0]:
                best = (dev_accuracy, ngrams, c, vectorizer, svm)
    dev_accuracy, ngrams, c, vectorizer, svm = best
    result = scores(svm.predict(vectorizer.transform(test_texts)), test_y, num_labels)
    # What a deployment would ship: the vocabulary (JSON), idf and weights (npz); no pickle.
    vocabulary = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
    (work_dir / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    np.savez(work_dir / "weights.npz", idf=vectorizer.idf_.astype(np.float32), coef=svm.coef_.astype(np.float32),
             intercept=svm.intercept_.astype(np.float32))
    latency = median_ms(lambda t: svm.decision_function(vectorizer.transform([t])), latency_texts)
    return {**result, "params": int(svm.coef_.size + svm.intercept_.size + vectorizer.idf_.size),
            "bytes": files_bytes([work_dir / "vocabulary.json", work_dir / "weights.npz"]), "latency_ms": latency,
            "tuned": {"C": c, "ngram_range": list(ngrams), "dev_accuracy": dev_accuracy}}


def _fasttext_line(text: str) -> str:
    import re

    # fastText reads one example per line and splits on whitespace: lowercase and split off punctuation.
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


# The grid reaches 200 epochs: on 500 bbc-news articles fastText needs 100-200 to converge (50 epochs: 80% test
# accuracy, 200: 90%); on rotten-tomatoes every setting lands within 57-59%.
FASTTEXT_GRID = {"wordNgrams": (1, 2), "lr": (0.1, 0.5, 1.0), "epoch": (10, 50, 100, 200)}


def train_fasttext(train_texts, train_y, dev_texts, dev_y, test_texts, test_y, num_labels: int, work_dir: Path,
                   latency_texts: list[str], seed: int = 0) -> dict:
    """fastText supervised (1 thread, deterministic); lr, epochs and word n-grams chosen on dev accuracy."""
    try:
        import fasttext
    except ImportError:
        raise GendistillError('The fasttext row needs a fastText binding: pip install "gendistill[benchmark]".') from None
    from gendistill.compressor.training import accuracy

    train_file = work_dir / "train.txt"
    train_file.write_text("".join(f"__label__{y} {_fasttext_line(t)}\n" for t, y in zip(train_texts, train_y)), encoding="utf-8")

    def predict(model, texts):
        labels, _ = model.predict([_fasttext_line(t) for t in texts], k=1)
        return [int(row[0].removeprefix("__label__")) for row in labels]

    best, failures = None, 0
    for word_ngrams, lr, epoch in itertools.product(*FASTTEXT_GRID.values()):
        try:
            model = fasttext.train_supervised(
                str(train_file), lr=lr, epoch=epoch, wordNgrams=word_ngrams, dim=100, minCount=1, thread=1,
                bucket=200_000 if word_ngrams > 1 else 0, seed=seed, verbose=0,
            )
        except RuntimeError:  # fastText aborts with "Encountered NaN" when a learning rate diverges
            failures += 1
            continue
        dev_accuracy = accuracy(predict(model, dev_texts), dev_y)
        if best is None or dev_accuracy > best[0]:
            best = (dev_accuracy, {"lr": lr, "epoch": epoch, "wordNgrams": word_ngrams}, model)
    if best is None:
        raise GendistillError("Every fastText configuration diverged; the fasttext row could not be trained.")
    dev_accuracy, tuned, model = best
    result = scores(predict(model, test_texts), test_y, num_labels)
    model.save_model(str(work_dir / "model.bin"))
    lines = [_fasttext_line(t) for t in latency_texts]
    latency = median_ms(lambda line: model.predict(line, k=-1), lines)
    params = int(model.get_input_matrix().size + model.get_output_matrix().size)
    train_file.unlink()
    return {**result, "params": params, "bytes": files_bytes([work_dir / "model.bin"]), "latency_ms": latency,
            "tuned": {**tuned, "dev_accuracy": dev_accuracy, "diverged_configs": failures}}

# --- the teacher and its encoder ---------------------------------------------------------------------


def _torch_median_ms(predict, texts: list[str]) -> float:
    """`median_ms` of a torch model's `predict(text)` on one thread (as every row's latency), in inference mode."""
    import torch

    from gendistill.compressor.training import torch_threads

    with torch_threads(1), torch.inference_mode():
        return median_ms(predict, texts)


def _encoder_latency(model, tokenizer, texts: list[str], max_length: int) -> float:
    """Median batch-1 milliseconds of a torch teacher-shaped model on one thread."""
    def predict(text):
        encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        return model(encoded["input_ids"], encoded["attention_mask"])

    return _torch_median_ms(predict, texts)


def _model_files(model_dir: Path) -> list[Path]:
    """What a deployment of a transformers folder ships: weights, configs and tokenizer files."""
    return [p for p in Path(model_dir).rglob("*") if p.suffix in (".safetensors", ".json", ".txt", ".model") and p.name != "training_args.json"]


def teacher_row(run_dir: Path, test_y, num_labels: int, latency_texts: list[str], max_length: int) -> dict:
    from gendistill.compressor.annotate import load_annotations
    from gendistill.compressor.rundir import read_json, stage_path
    from gendistill.compressor.teacher import load_teacher

    result = scores(load_annotations(run_dir, "test").argmax(1), test_y, num_labels)
    model, tokenizer = load_teacher(run_dir)
    return {**result, "params": read_json(stage_path(run_dir, "teacher") / "metrics.json")["params"],
            "bytes": files_bytes(_model_files(stage_path(run_dir, "teacher") / "model")),
            "latency_ms": _encoder_latency(model, tokenizer, latency_texts, max_length)}


def encoder_lr_row(teacher, labels: list[str], train_texts, train_y, test_texts, test_y, latency_texts: list[str]) -> dict:
    """`encoder-lr`: the teacher's encoder (`teacher`: the run's TeacherSettings) frozen and pooled the way it was
    trained (mean pooling when the checkpoint declares none), + logistic regression with C by cross-validation on
    the labeled texts. This is the teacher stage's `frozen` recipe, scored on test: what a user gets from the same
    encoder without any of our stages."""
    from gendistill.compressor.assets import load_hf, resolve_model
    from gendistill.compressor.encoder import Pooling, build_teacher
    from gendistill.compressor.teacher import fit_frozen_head, teacher_logits

    source = resolve_model(teacher.model, "teacher")
    model, tokenizer = build_teacher(source, len(labels), labels, lambda loader, name, **kw: load_hf(loader, name, "teacher", **kw),
                                     pooling_default=Pooling("mean"))
    c = fit_frozen_head(model, tokenizer, teacher, train_texts, train_y)
    model.eval()
    result = scores(teacher_logits(model, tokenizer, test_texts, teacher.max_length).argmax(1), test_y, len(labels))
    return {**result, "params": sum(p.numel() for p in model.parameters()),
            "bytes": files_bytes(_model_files(source)) if Path(source).is_dir() else None,
            "latency_ms": _encoder_latency(model, tokenizer, latency_texts, teacher.max_length), "tuned": {"C": c}}


# --- model2vec: a static model distilled from the teacher's encoder ------------------------------------

MODEL2VEC_DIMS = 256
"""model2vec's own default PCA width."""


def model2vec_cache_path(source: str) -> Path:
    """Where the static model of the encoder `source` is kept: one per encoder, shared by every seed and run."""
    import hashlib

    from gendistill.compressor.assets import cache_dir

    return cache_dir() / "model2vec" / f"{Path(str(source)).name}-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}-{MODEL2VEC_DIMS}"


def model2vec_dir(source: str, python: str) -> Path:
    """model2vec's static model of the encoder `source` (a folder or hub name), distilled once into the cache by
    `model2vec_distill.py` in model2vec's own environment (`python`: its interpreter, `make model2vec-env`)."""
    import subprocess

    target = model2vec_cache_path(source)
    if (target / "model.safetensors").is_file():
        return target
    if not Path(python).is_file():
        raise GendistillError(f"The model2vec-lr row needs model2vec's own environment, and {python} does not exist: run "
                              "`make model2vec-env` (model2vec's distill extra pins transformers < 5.4, so it cannot share ours).")
    target.parent.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("model2vec_distill.py")
    done = subprocess.run([python, str(script), str(source), str(target), str(MODEL2VEC_DIMS)], capture_output=True, text=True)
    if done.returncode != 0 or not (target / "model.safetensors").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise GendistillError(f"model2vec could not distill {source} ({tail[0]}); run {python} {script} {source} {target} to see why.")
    return target


def model2vec_lr_row(teacher, python: str, train_texts, train_y, dev_texts, dev_y, test_texts, test_y, num_labels: int,
                     latency_texts: list[str]) -> dict:
    """`model2vec-lr`: the teacher's encoder (untouched) distilled by model2vec with its defaults, its text
    vectors + logistic regression, C chosen on dev accuracy: the static model a user would make from the same
    encoder without any of our stages."""
    from model2vec import StaticModel
    from sklearn.linear_model import LogisticRegression

    from gendistill.compressor.assets import resolve_model
    from gendistill.compressor.training import accuracy

    folder = model2vec_dir(resolve_model(teacher.model, "teacher"), python)
    model = StaticModel.from_pretrained(str(folder))
    x_train, x_dev = model.encode(list(train_texts)), model.encode(list(dev_texts))
    best = None
    for c in C_GRID:
        lr = LogisticRegression(C=c, max_iter=5000).fit(x_train, train_y)
        dev_accuracy = accuracy(lr.predict(x_dev), dev_y)
        if best is None or dev_accuracy > best[0]:
            best = (dev_accuracy, c, lr)
    dev_accuracy, c, lr = best
    result = scores(lr.predict(model.encode(list(test_texts))), test_y, num_labels)
    latency = median_ms(lambda t: lr.decision_function(model.encode([t])), latency_texts)
    files = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".json")]
    return {**result, "params": int(model.embedding.size + lr.coef_.size + lr.intercept_.size), "bytes": files_bytes(files),
            "latency_ms": latency, "tuned": {"C": c, "dev_accuracy": dev_accuracy, "dims": int(model.embedding.shape[1]),
                                            "vocabulary": int(model.embedding.shape[0])}}


# --- SetFit: contrastive fine-tuning of a sentence encoder + logistic regression -------------------------

SETFIT_ITERATIONS = 20
"""Pairs per labeled text and epoch. Set explicitly: setfit 1.2's own default (`None`) oversamples to about
20,000 pairs for 200 texts, 2.5x the cost for the same recipe."""


def setfit_row(encoder: str, seed: int, train_texts, train_y, test_texts, test_y, num_labels: int, work_dir: Path,
               latency_texts: list[str]) -> dict:
    """`setfit`: SetFit 1.2 with its documented recipe (CosineSimilarityLoss on pairs of labeled texts, one epoch,
    batch 16, `SETFIT_ITERATIONS`, then its logistic-regression head) on the sentence encoder `encoder` (an
    embedded name, hub name or folder): the few-shot classifier a user would try first."""
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError:
        raise GendistillError('The setfit row needs SetFit: pip install "gendistill[benchmark]".') from None
    from datasets import Dataset

    from gendistill.compressor.assets import resolve_model

    model = SetFitModel.from_pretrained(resolve_model(encoder, "teacher"))
    args = TrainingArguments(batch_size=16, num_iterations=SETFIT_ITERATIONS, num_epochs=1, seed=seed, report_to="none",
                             output_dir=str(work_dir / "checkpoints"))
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": list(train_texts), "label": list(train_y)})).train()
    result = scores(np.asarray(model.predict(list(test_texts))), test_y, num_labels)
    model.save_pretrained(str(work_dir / "model"))
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    latency = _torch_median_ms(lambda t: model.predict([t]), latency_texts)
    return {**result, "params": sum(p.numel() for p in model.model_body.parameters()) + int(model.model_head.coef_.size + model.model_head.intercept_.size),
            "bytes": files_bytes(_model_files(work_dir / "model")) + files_bytes(list((work_dir / "model").glob("*.pkl"))),
            "latency_ms": latency, "tuned": {"iterations": SETFIT_ITERATIONS, "encoder": encoder}}
