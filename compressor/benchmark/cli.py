"""`gendistill benchmark`: parse options, call benchmark.run.run_benchmark, print the headline."""

from __future__ import annotations

import shlex
import sys

import click


def _numbers(kind):
    def parse(ctx, param, value):
        if value is None or value == "":
            return []
        try:
            return [kind(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"give comma-separated {kind.__name__} values, e.g. 0,250,500") from None
    return parse


def _words(ctx, param, value):
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _pipeline_options(function):
    """The pipeline's own options (teacher, generator, synthesis, student), generated from its settings
    classes like `compress`'s; what the benchmark sets per row or seed itself is left out."""
    from gendistill.compressor.pipeline import STAGE_SETTINGS
    from gendistill.runtime.settings import click_options

    stages = [cls for stage, cls in STAGE_SETTINGS.items() if stage != "export"]
    return click_options(stages, exclude={"per_class", "seed", "synthetic", "annotate_unlabeled", "labeled_only_baseline"})(function)


@click.command()
@click.option("--dataset", "datasets", multiple=True,
              help="rotten-tomatoes, bbc-news or a data file (as for `compress`); repeat for several.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds 0..N-1: one split, teacher, generator and students each.")
@click.option("--per-class", type=int, default=100, show_default=True, help="Labeled examples per class (papers: 100).")
@click.option("--synthetic-counts", default="0,1000,2500,5000,10000", show_default=True, callback=_numbers(int),
              help="Transfer-set sizes for the curve; the largest is generated once per seed.")
@click.option("--no-oracle-curve", is_flag=True, help="Train the oracle only at the largest count.")
@click.option("--lambdas", default="", callback=_numbers(float), help="Ablation: λ values, e.g. 0,0.2,0.8.")
@click.option("--kd-temperatures", default="", callback=_numbers(float), help="Ablation: KD temperatures, e.g. 2,4.")
@click.option("--architectures", default="", callback=_words, help="Ablation: student architectures, e.g. res-cnn.")
@click.option("--embedding-inits", default="", callback=_words, help="Ablation: embedding initialisations, e.g. random,glove.")
@click.option("--samplers", default="", callback=_words,
              help="Ablation: sampling backends, e.g. hf: each samples its own texts from the same generator (see --synthesis-count).")
@click.option("--top-ks", default="", callback=_numbers(int), help="Ablation: top-k of sampling, e.g. 50 (0 = full distribution).")
@click.option("--synthesis-count", type=int, default=None,
              help="Synthetic texts per sampler/top-k ablation, one of --synthetic-counts (default: the largest).")
@click.option("--no-export", is_flag=True, help="Skip the int8 export (no student size or latency).")
@click.option("--latency-texts", type=int, default=100, show_default=True, help="Test texts timed one by one per model.")
@click.option("--time-budget-min", type=float, default=None,
              help="Start no further seed once this many minutes are spent (or the next would overrun); results keep the finished seeds.")
@click.option("--out", "out_dir", type=click.Path(), required=True, help="Where results.json, RESULTS.md and the plots go.")
@click.option("--runs-dir", type=click.Path(), default=None, help="Where the per-seed pipeline runs are cached (default OUT/runs).")
@click.option("--model2vec-python", type=click.Path(dir_okay=False), default=None,
              help="Python of model2vec's own environment (make model2vec-env): adds the model2vec-lr row.")
@click.option("--setfit-encoder", default=None,
              help="Sentence encoder for the setfit row, e.g. embedded-minilm (about 15 min per seed on 2 CPU cores for 200 short reviews, 2.6 hours for 500 bbc-news articles); default: no setfit row.")
@click.option("--report-only", is_flag=True, help="Re-render RESULTS.md and the plots from OUT/results.json; run nothing.")
@_pipeline_options
@click.pass_context
def benchmark(ctx, datasets, seeds, per_class, synthetic_counts, no_oracle_curve, lambdas, kd_temperatures, architectures,
              embedding_inits, samplers, top_ks, synthesis_count, no_export, latency_texts, time_budget_min, out_dir, runs_dir, model2vec_python, setfit_encoder, report_only, **pipeline):
    """Reproduce the papers' tables on real data: peers, teacher, and every student, over seeds."""
    from gendistill.runtime.errors import GendistillError, require_extra

    require_extra("torch", "transformers", "onnx", "sklearn", "matplotlib")
    if report_only:
        from gendistill.compressor.benchmark.report import render_from

        render_from(out_dir)
        click.echo(f"Rendered {out_dir}/RESULTS.md and the plots from {out_dir}/results.json")
        return
    if not datasets:
        raise GendistillError("Give at least one --dataset (rotten-tomatoes, bbc-news or a data file).")
    import transformers

    from gendistill.compressor.benchmark.report import headline
    from gendistill.compressor.benchmark.run import BenchmarkSettings, run_benchmark

    transformers.utils.logging.disable_progress_bar()
    # Only what the command line changed is recorded; everything else is the pipeline's default.
    changed = {k: v for k, v in pipeline.items() if ctx.get_parameter_source(k).name != "DEFAULT"}
    bench = BenchmarkSettings(
        datasets=list(datasets), seeds=list(range(seeds)), per_class=per_class, synthetic_counts=synthetic_counts,
        oracle_curve=not no_oracle_curve, lambdas=lambdas, kd_temperatures=kd_temperatures, architectures=architectures,
        embeddings=embedding_inits, samplers=samplers, top_ks=top_ks, synthesis_count=synthesis_count, export=not no_export, latency_texts=latency_texts, time_budget_minutes=time_budget_min,
        pipeline=changed, model2vec_python=model2vec_python, setfit_encoder=setfit_encoder,
    )
    argv = sys.argv[1:]
    command = "gendistill " + " ".join(shlex.quote(a) for a in argv) if "benchmark" in argv else None
    try:
        results = run_benchmark(bench, out_dir, runs_dir=runs_dir, command=command)
    except KeyboardInterrupt:
        click.echo("Interrupted; finished stages and rows are cached and the same command resumes.", err=True)
        raise SystemExit(130) from None
    for name, dataset in results["datasets"].items():
        click.echo(f"\n{name} ({dataset['per_class']}/class, seeds {dataset['seeds']})")
        click.echo(f"{'model':<26} {'accuracy':>14} {'macro-F1':>9} {'params':>12} {'latency ms':>11}")
        for row in dataset["rows"]:
            latency = "-" if row["latency_ms"] is None else f"{row['latency_ms']:.3f}"
            click.echo(f"{row['model']:<26} {100 * row['accuracy_mean']:>7.1f} ± {100 * row['accuracy_std']:<4.1f} "
                       f"{100 * row['macro_f1_mean']:>9.1f} {row['params']:>12,} {latency:>11}")
        h = headline(dataset)
        click.echo(f"student-gendist: {100 * h['student_vs_teacher']:.1f}% of the teacher, {100 * h['minus_tfidf_svm']:+.1f} vs TF-IDF+SVM, "
                   f"{100 * h['minus_fasttext']:+.1f} vs fastText")
    if results.get("skipped_for_time_budget"):
        click.echo("Skipped for the time budget: " + ", ".join(f"{s['dataset']} seed {s['seed']}" for s in results["skipped_for_time_budget"]))
    click.echo(f"\nResults: {out_dir}/results.json, {out_dir}/RESULTS.md")
