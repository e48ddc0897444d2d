"""Settings in one place: a dataclass field is an option of the Python API, of `compress`, `demo` and
`benchmark`, with its default, choices, help text and checks coming from that field alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from gendistill.compressor.pipeline import STAGE_SETTINGS, build_settings
from gendistill.runtime.cli import main
from gendistill.runtime.errors import GendistillError
from gendistill.runtime.settings import Settings, click_options, field_docs, options_of


@dataclass
class ToySettings(Settings):
    PREFIX = "toy_"
    NAMES = {"seed": "seed"}
    FLAGS = {"toy_lam": "--lambda"}

    epochs: int = 3
    """Training epochs."""
    lam: float = 0.5
    """Weight of the true-label loss."""
    kind: Literal["a", "b"] = "a"
    """Which kind."""
    verbose: bool = False
    """Say more."""
    seed: int = 0
    """Seed."""

    def validate(self):
        self.at_least("epochs", 1)
        self.between("lam", 0, 1)


def test_a_field_is_an_option_with_its_default_choices_help_and_checks():
    @click.command()
    @click_options([ToySettings])
    def command(**values):
        click.echo(repr(ToySettings(**{f.name: values[ToySettings.api_name(f.name)] for f in dataclasses.fields(ToySettings)})))

    help_text = CliRunner().invoke(command, ["--help"]).output
    for expected in ("--toy-epochs", "Training epochs.", "[default: 3]", "--lambda", "--toy-kind [a|b]", "--toy-verbose", "--seed"):
        assert expected in help_text
    result = CliRunner().invoke(command, ["--toy-epochs", "5", "--lambda", "0.25", "--toy-kind", "b", "--toy-verbose"])
    assert "epochs=5, lam=0.25, kind='b', verbose=True" in result.output
    with pytest.raises(GendistillError, match=r"--toy-epochs must be at least 1, not 0\."):
        ToySettings(epochs=0)
    with pytest.raises(GendistillError, match=r"--lambda must lie in \[0, 1\], not 2\."):
        ToySettings(lam=2)
    with pytest.raises(GendistillError, match="--toy-kind must be one of a, b, not 'c'"):
        ToySettings(kind="c")


def test_every_stage_option_has_help_and_one_meaning():
    seen = {}
    for cls in STAGE_SETTINGS.values():
        docs = field_docs(cls)
        for f in options_of(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring (its --help text)"
            name = cls.api_name(f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert seen.setdefault(name, default) == default, f"{name} has two defaults"


def test_shared_options_set_every_stage_and_nothing_is_changed_after_building():
    settings = build_settings("toy.csv", seed=7, max_length=64, lam=0.3, sampling_temperature=0.8)
    assert {settings.data.seed, settings.teacher.seed, settings.generator.seed, settings.synthesize.seed, settings.distill.seed} == {7}
    assert (settings.teacher.max_length, settings.distill.max_length) == (64, 0)  # the student's own length: auto
    assert build_settings("toy.csv", student_max_length=300).distill.max_length == 300
    assert settings.distill.lam == 0.3 and settings.synthesize.sampling_temperature == 0.8
    assert dataclasses.replace(settings) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.export = None
    assert build_settings("toy.csv", no_export=True).stages()[-1] == "evaluate"


def test_unknown_settings_are_refused_in_one_sentence():
    with pytest.raises(GendistillError, match="Unknown setting alpha"):
        build_settings("toy.csv", alpha=0.5)
    from gendistill import compress, export_run

    with pytest.raises(GendistillError, match="Unknown setting temperature"):
        compress("toy.csv", "nowhere", temperature=1.0)
    with pytest.raises(GendistillError, match="Unknown export setting threads"):
        export_run("nowhere", "nowhere-bundle", threads=2)


def test_demo_and_benchmark_share_the_generated_options():
    demo_help = CliRunner().invoke(main, ["demo", "--help"]).output
    assert "--per-class INTEGER" in demo_help and "[default: 100]" in demo_help.split("--per-class", 1)[1].split("--", 1)[0]
    bench_help = CliRunner().invoke(main, ["benchmark", "--help"]).output
    for flag in ("--teacher-epochs", "--sampling-temperature", "--lambda", "--kd-temperature", "--student-epochs"):
        assert flag in demo_help and flag in bench_help
