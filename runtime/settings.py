"""Settings dataclasses: the one place where each option's default, choices, help text and checks live.

A stage's settings class is a dataclass that inherits `Settings`:

    @dataclass
    class TeacherSettings(Settings):
        PREFIX = "teacher_"
        epochs: int = 10
        \"\"\"Fine-tuning epochs.\"\"\"                       <- the option's help text
        recipe: Literal["finetune", "frozen"] = "finetune"  <- the option's choices, checked on creation

        def validate(self):
            self.at_least("epochs", 1)

Each field is an option of the Python API and the command line. Its API name is PREFIX + field name
(or NAMES[field]); its flag is the API name with dashes (or FLAGS[api name]). Fields of several stages
with the same API name (`seed`) are one option that sets them all. `click_options` turns a list of
settings classes into click options; `build` makes an instance from API-named values. Adding an
option is adding a field.

Standard library only (click is imported when options are generated), so the core install can use it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from gendistill.runtime.errors import GendistillError


class Settings:
    PREFIX: ClassVar[str] = ""
    """Prepended to a field's name to make its API name (`teacher_` + `epochs`)."""
    NAMES: ClassVar[dict] = {}
    """field name -> API name, where the prefixed name is not the one users know (`model` -> `teacher`)."""
    FLAGS: ClassVar[dict] = {}
    """API name -> command-line flag, where it is not the API name with dashes (`lam` -> `--lambda`)."""
    INTERNAL: ClassVar[tuple] = ()
    """Fields that are set from code (the Python API), not from the command line."""
    SHARED: ClassVar[tuple] = ()
    """Fields that keep their own name in every stage (`seed`): one option sets them all."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            choices = choices_of(type(self), f.name)
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise GendistillError(f"{self.flag(f.name)} must be one of {', '.join(map(str, choices))}, not {value!r}.")
        self.validate()

    def validate(self) -> None:
        """Check field values and their combinations; raise GendistillError naming the flag."""

    @classmethod
    def from_saved(cls, saved: dict, **changes):
        """The settings a stage recorded (its settings.json), with `changes`; keys this class no longer has (removed
        settings, `upstream`) are dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in names}, **changes})

    # --- naming ------------------------------------------------------------------------------------

    @classmethod
    def api_name(cls, field: str) -> str:
        if any(field in getattr(klass, "SHARED", ()) for klass in cls.__mro__):
            return field
        return cls.NAMES.get(field, cls.PREFIX + field)

    @classmethod
    def flag(cls, field: str) -> str:
        name = cls.api_name(field)
        return cls.FLAGS.get(name, "--" + name.replace("_", "-"))

    # --- checks --------------------------------------------------------------------------------------

    def at_least(self, field: str, minimum) -> None:
        value = getattr(self, field)
        if value is not None and not value >= minimum:
            raise GendistillError(f"{self.flag(field)} must be at least {minimum}, not {value}.")

    def positive(self, field: str) -> None:
        value = getattr(self, field)
        if value is not None and not value > 0:
            raise GendistillError(f"{self.flag(field)} must be positive, not {value}.")

    def between(self, field: str, low, high, low_open: bool = False) -> None:
        value = getattr(self, field)
        if value is None:
            return
        inside = (low < value if low_open else low <= value) and value <= high
        if not inside:
            interval = f"{'(' if low_open else '['}{low}, {high}]"
            raise GendistillError(f"{self.flag(field)} must lie in {interval}, not {value}.")


@dataclass
class Seeded(Settings):
    """Settings of a stage that draws random numbers."""

    SHARED = ("seed",)

    seed: int = 0
    """Seed of every random choice: splits, initialisations, sampling."""


@dataclass
class OnDevice(Settings):
    """Settings of a stage that runs torch (or CTranslate2)."""

    SHARED = ("device",)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where torch (and CTranslate2) run: a CUDA GPU when there is one (auto), or as asked."""


def choices_of(cls, field: str) -> tuple:
    hint = _hints(cls).get(field)
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return ()


def value_type(cls, field: str) -> type:
    """The type a field's value is parsed as: its annotation without None (`int | None` -> int); str for choices."""
    hint = _hints(cls)[field]
    if typing.get_origin(hint) is Literal:
        return str
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """field name -> the docstring written under it, for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (frozen apps): options just lack help
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def options_of(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in cls.INTERNAL]


def build(cls, values: dict, **fixed):
    """An instance of `cls` from API-named `values` (missing ones keep their defaults), plus `fixed` fields."""
    kwargs = {f.name: values[cls.api_name(f.name)] for f in dataclasses.fields(cls) if cls.api_name(f.name) in values}
    return cls(**{**kwargs, **fixed})


def api_names(classes) -> set[str]:
    return {cls.api_name(f.name) for cls in classes for f in dataclasses.fields(cls)}


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def click_options(classes, defaults: dict | None = None, exclude=()):
    """A decorator adding one click option per option field of `classes` (shared API names once).

    `defaults` overrides a default shown and used by this command (the demo's `per_class`); `exclude`
    leaves out API names the command sets itself.
    """
    import click

    defaults = defaults or {}
    options, seen = [], {}
    for cls in classes:
        docs = field_docs(cls)
        for f in options_of(cls):
            name = cls.api_name(f.name)
            if name in exclude:
                continue
            default = defaults.get(name, default_of(f))
            if name in seen:
                if seen[name] != default:
                    raise TypeError(f"option {name} has two defaults, {seen[name]!r} and {default!r}")
                continue
            seen[name] = default
            flag, help_text = cls.flag(f.name), docs.get(f.name)
            choices = choices_of(cls, f.name)
            kind = click.Choice([str(c) for c in choices]) if choices else value_type(cls, f.name)
            if kind is bool:
                declaration = f"{flag}/--no-{flag[2:]}" if default else flag
                options.append(click.option(declaration, name, is_flag=True, default=bool(default), show_default=bool(default), help=help_text))
            else:
                options.append(click.option(flag, name, type=kind, default=default, show_default=default is not None, help=help_text))

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
