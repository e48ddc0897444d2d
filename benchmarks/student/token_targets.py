"""Probe: does the bigru learn more from the teacher when it also copies the teacher's per-token verdicts?

The teacher pools its token states by their mean (all-mpnet-base-v2 then scales the mean to length 1) and puts a
linear head on it, so its logit is exactly the mean of one logit vector per token, head(h_t / |mean|) / T: for each of
its tokens in context, which way that token pulls. A text's soft label is one number on two classes; these are one a
token. Here the student is asked to reproduce them too: each student piece gets the mean of the teacher's per-token
logits over the teacher tokens its characters overlap (both tokenizers give character offsets), a linear map used only
in training reads the bigru's state at that piece (`BiGRU.states`), and beta times the mean squared error of the two
(centred, as the text-level logits loss) is added to the loss (through `train_student`'s `extra_loss`). Texts whose
student ids cannot be aligned are left out of this term. `--deviation`: each piece's target less the text's mean
target, so only where the teacher's pull varies within a text.

Two steps, the first once a run (the teacher over the training texts in fp32 torch, cached in the run directory; it
also checks the decomposition and prints how much the per-token logits vary within and between texts):

    python benchmarks/student/token_targets.py teacher runs/demo --count 10000
    python benchmarks/student/token_targets.py ablate runs/demo OUT.json --beta 1 [--deviation] \
        --seeds 3 --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher

`ablate` is benchmarks/student/ablate.py (same arguments) with the token term switched on; each variant's name gets
`,token_beta=B` (and `,token_target=deviation`) so its students and results stay apart from ablate.py's own.
Results: benchmarks/student/RESULTS.md, "Copying the teacher's per-token verdicts".
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from probe_run import side_module, train_with_extra_loss  # noqa: E402  (benchmarks/student/probe_run.py)


def cache_path(run_dir: Path) -> Path:
    return run_dir / "student-ablation" / "token-targets.pkl"


def teacher_step(run_dir: Path, count: int, batch_size: int = 32) -> None:
    import torch
    from tqdm import tqdm

    import ablate
    from gendistill.compressor.benchmark.students import student_data
    from gendistill.compressor.teacher import load_teacher, teacher_max_length

    settings = ablate.run_settings(run_dir)
    texts = student_data(run_dir, settings, "synthetic", count)["texts"]
    path = cache_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = pickle.loads(path.read_bytes()) if path.is_file() else {}
    todo = sorted({t for t in texts if t not in cache}, key=len)
    model, tokenizer = load_teacher(run_dir)
    assert model.pooling is not None and model.pooling.mode == "mean", "needs a mean-pooled teacher"
    max_length = teacher_max_length(run_dir)

    def per_token_logits(batch):
        encoded = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                            return_offsets_mapping=True, return_special_tokens_mask=True)
        with torch.inference_mode():
            states = model.encoder(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
            # The mean over the mask of head(h_t / |pooled|) is the head of the normalised pooled vector: the logit (less its shift).
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1)
            scale = pooled.norm(dim=-1).clamp(min=1e-12)[:, None, None] if model.pooling.normalize else 1.0
            per_token = model.head(states / scale) / model.temperature
        return encoded, per_token.numpy()

    encoded, per_token = per_token_logits(texts[:batch_size])  # checked once against the teacher's own forward
    with torch.inference_mode():
        logits = model(encoded["input_ids"], encoded["attention_mask"]).numpy()
    mask = encoded["attention_mask"].numpy()[..., None]
    difference = np.abs((per_token * mask).sum(1) / mask.sum(1) + model.shift.numpy() - logits).max()
    print(f"the mean of the per-token logits (+ shift) differs from the teacher's logits by at most {difference:.1e} on {min(batch_size, len(texts))} texts")
    bar = tqdm(total=len(todo), desc="teacher per-token logits", unit="text")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        encoded, per_token = per_token_logits(batch)
        for row, text in enumerate(batch):
            keep = (encoded["attention_mask"][row] == 1) & (encoded["special_tokens_mask"][row] == 0)
            offsets = encoded["offset_mapping"][row][keep].numpy().astype(np.int32)
            cache[text] = (offsets, per_token[row][keep.numpy()].astype(np.float16))
        bar.update(len(batch))
        if start // batch_size % 100 == 99:
            path.write_bytes(pickle.dumps(cache))  # resumable
    bar.close()
    path.write_bytes(pickle.dumps(cache))
    print(f"{len(cache)} texts in {path}")
    # How much the per-token logits vary within a text, against how much the texts' own logits vary (class 0 - class 1).
    margins = [(per_token[:, 0] - per_token[:, 1]).astype(np.float64) for _, per_token in (cache[t] for t in texts) if len(per_token) > 1]
    within = np.mean([m.std() for m in margins])
    across = np.std([m.mean() for m in margins])
    print(f"per-token margin: std within a text {within:.3f} (mean over {len(margins)} texts), std of the texts' mean margins {across:.3f}")


def piece_targets(text: str, inputs, teacher_entry, num_labels: int):
    """[n_pieces, num_labels] teacher targets for the student's pieces of `text` (NaN rows: no overlapping teacher
    token), or None when the student's pieces cannot be placed on the text's characters."""
    from gendistill.runtime.preprocess import normalize

    spec = inputs.spec
    normalized = normalize(text, spec.lowercase, spec.digits_to_zero)
    if len(normalized) != len(text):
        return None
    proto = inputs.tokenizer.encode(normalized, return_type="proto")
    pieces = list(proto.pieces)[: spec.max_length]
    if [p.id for p in pieces] != inputs.encode_one(text):
        return None
    # sentencepiece's offsets count UTF-8 bytes of the text: map them to characters.
    char_at = np.zeros(len(normalized.encode()) + 1, dtype=np.int64)
    position = 0
    for i, ch in enumerate(normalized):
        width = len(ch.encode())
        char_at[position : position + width] = i
        position += width
    char_at[position] = len(normalized)
    offsets, per_token = teacher_entry
    targets = np.full((len(pieces), num_labels), np.nan, dtype=np.float32)
    for k, piece in enumerate(pieces):
        begin, end = char_at[piece.begin], char_at[piece.end]
        overlap = (offsets[:, 0] < end) & (offsets[:, 1] > begin)
        if overlap.any():
            targets[k] = per_token[overlap].astype(np.float32).mean(0)
    return targets


def token_loss_factory(run_dir: Path, beta: float, deviation: bool = False):
    """An `extra_loss` builder for train_student: aligns the cached teacher targets to this student's pieces."""
    import torch
    import torch.nn.functional as F

    cache = pickle.loads(cache_path(run_dir).read_bytes())

    def build(texts, inputs, num_labels, hidden):
        aligned, missing = [], 0
        for text in texts:
            entry = cache.get(text)
            targets = piece_targets(text, inputs, entry, num_labels) if entry is not None else None
            if targets is not None and deviation:  # each piece's pull less the text's mean pull (the text's logit)
                targets = targets - np.nanmean(targets, axis=0, keepdims=True)
            missing += targets is None
            aligned.append(targets)
        print(f"token targets: {len(texts) - missing} of {len(texts)} texts aligned", file=sys.stderr, flush=True)
        head, catch_up = side_module(lambda: torch.nn.Linear(2 * hidden, num_labels))

        def extra_loss(model, batch, input_ids):
            catch_up()
            width = input_ids.shape[1]
            target = torch.full((len(batch), width, num_labels), float("nan"))
            for row, i in enumerate(batch.tolist()):
                if aligned[i] is not None:
                    n = min(width, len(aligned[i]))
                    target[row, :n] = torch.from_numpy(aligned[i][:n])
            valid = ~torch.isnan(target).any(2)
            if not valid.any():
                return None
            predicted = head(model.states(input_ids))[valid]  # a second pass of the GRUs (no dropout in it): the same states
            wanted = target[valid]
            return beta * F.mse_loss(predicted - predicted.mean(1, keepdim=True), wanted - wanted.mean(1, keepdim=True))

        return extra_loss

    return build


def ablate_step(argv: list[str], beta: float, deviation: bool) -> None:
    import ablate

    build = token_loss_factory(Path(argv[0]), beta, deviation)
    train_with_extra_loss(lambda config, inputs, texts: build(texts, inputs, config.num_labels, config.hidden))
    ablate.main(argv, probe={"token_beta": f"{beta:g}", **({"token_target": "deviation"} if deviation else {})})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["teacher", "ablate"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--count", type=int, help="teacher: the first COUNT transfer texts (with the labeled ones)")
    parser.add_argument("--beta", type=float, help="ablate: the token term's weight")
    parser.add_argument("--deviation", action="store_true", help="ablate: each piece's target less the text's mean")
    args, rest = parser.parse_known_args()
    if args.step == "teacher":
        teacher_step(args.run_dir, args.count)
    else:
        ablate_step([str(args.run_dir), *rest], args.beta, args.deviation)


if __name__ == "__main__":
    main()
