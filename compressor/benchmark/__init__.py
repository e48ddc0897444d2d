"""The benchmark: the papers' tables (generation-distillation Table 1, Figure 2, Table 2; GAL's λ and
oracle) re-measured on real data, against the tools users pick instead.

For each dataset and seed the pipeline's shared stages run once (`run_compress` into
`RUNS/<dataset>/seed<k>/`: seeded split, teacher, generator, the largest number of synthetic texts,
teacher annotations incl. the real unlabeled texts for the oracle, and the generation-distillation
student). Every row is then trained from those caches:

    tfidf-svm                 TF-IDF + LinearSVC, C and n-grams chosen on dev
    fasttext                  fastText supervised, lr / epochs / word n-grams chosen on dev
    teacher                   the fine-tuned teacher (its test logits from the annotate stage)
    student-labeled-only      a student (--labeled-only-student: static), cross-entropy on the labeled texts only
    student-kd                + plain KD on the same labeled texts (no transfer set)
    student-gendist           + KD on the synthetic texts (the pipeline's own student)
    student-gendist-hard      same, teacher argmax instead of soft labels
    student-oracle-unlabeled  same, real unlabeled texts instead of synthetic ones (GAL's upper bound)

plus the synthetic-count curve (prefixes of the synthetic texts, and of the unlabeled ones) and one
ablation per requested value (λ, KD temperature, architecture, embedding initialisation). Each student
builds its own tokenizer from the texts it trains on, as `run_distill` would for that training set.

Every finished row is cached as `RUNS/<dataset>/seed<k>/benchmark/<row>.json` with the settings that
made it, so an interrupted benchmark resumes where it stopped. A finished seed is also kept in OUT/results.json
with the settings that made it; the same command on another machine (no runs dir) reads it back instead of
re-running it, so a long benchmark can be finished a seed at a time (`run.recorded_seeds`).

Sizes ("bytes") are the files needed to predict: the teacher's weights + tokenizer + config, the
student's int8 model.onnx + tokenizer.model, the TF-IDF vocabulary + weights, the fastText .bin.
Latency is the median batch-1 wall time of one text, raw string in, scores out, 1 thread, each model
in its own runtime (runtime.Classifier / onnxruntime for students, PyTorch for the teacher,
scikit-learn and fastText for the peers).

Modules: `run` (settings, one seed, aggregation over seeds, resuming), `peers` (TF-IDF+SVM, fastText,
the teacher row), `students` (every student row, trained through the distill stage's own
`distill_student`), `measure` (scores, latency and sizes for every row), `report` (results.json's schema,
RESULTS.md and the plots, re-renderable from results.json alone), `cli` (`gendistill benchmark`).
"""
