"""Probe: does the bigru generalise further when it also learns to predict the next (and previous) piece of its
transfer texts, as an auxiliary language-model loss?

The student fits its training texts far better than it follows the teacher on test texts, and the one signal it gets
a text is one logit vector. Semi-supervised sequence learning (Dai & Le 2015) and ULMFiT taught recurrent classifiers
word order and composition from unlabeled text with a language-model objective; here that objective is added beside
distillation on the same texts: a linear map used only in training reads the forward GRU's state at each piece and
predicts the next piece, another reads the backward GRU's and predicts the previous one (`BiGRU.states`), and beta
times the mean of the two cross-entropies (over the student's own vocabulary) is added to each step's loss through
`train_student`'s `extra_loss`. The maps are dropped at export: the bundle is the default's.

    python benchmarks/student/lm_probe.py runs/demo OUT.json --beta 0.1 \
        --seeds 3 --variant bigru:teacher:synthetic:teacher_labels=logits,vocabulary=teacher

The rest of the arguments are benchmarks/student/ablate.py's; each variant's name gets `,lm_beta=B` so its students
and results stay apart from ablate.py's own. Results: benchmarks/student/RESULTS.md, "A language-model loss beside
distillation".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from probe_run import side_module, train_with_extra_loss  # noqa: E402  (benchmarks/student/probe_run.py)


def lm_loss_factory(beta: float):
    """An `extra_loss` builder for train_student: two training-only linear maps from the GRUs' states to the pieces."""
    import torch
    import torch.nn.functional as F

    def build(vocab_size: int, hidden: int):
        heads, catch_up = side_module(lambda: torch.nn.ModuleList([torch.nn.Linear(hidden, vocab_size), torch.nn.Linear(hidden, vocab_size)]))

        def extra_loss(model, batch, input_ids):
            catch_up()
            states = model.states(input_ids)  # [B, T, 2H]: forward GRU's then backward GRU's, 0 at pads
            ahead, behind = states[..., :hidden], states[..., hidden:]
            real = input_ids != model.pad_id
            nxt = real[:, :-1] & real[:, 1:]  # a piece with a next one
            if not nxt.any():
                return None
            forward = F.cross_entropy(heads[0](ahead[:, :-1][nxt]), input_ids[:, 1:][nxt])
            backward = F.cross_entropy(heads[1](behind[:, 1:][nxt]), input_ids[:, :-1][nxt])
            return beta * (forward + backward) / 2

        return extra_loss

    return build


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beta", type=float, required=True, help="the language-model term's weight")
    args, rest = parser.parse_known_args()
    import ablate

    build = lm_loss_factory(args.beta)
    train_with_extra_loss(lambda config, inputs, texts: build(config.vocab_size, config.hidden))
    ablate.main(rest, probe={"lm_beta": f"{args.beta:g}"})


if __name__ == "__main__":
    main()
