"""The `gendistill` command line: a click group whose commands are thin wrappers over plain functions.

Subcommands live next to the code they drive and are imported only when invoked, so `gendistill --help`
stays instant and `gendistill predict` works on the core install (no torch).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from runtime.errors import GendistillError

# name -> "module:attribute"; each module owns its command.
COMMANDS = {
    "compress": "compressor.commands:compress",
    "demo": "compressor.commands:demo",
    "benchmark": "compressor.benchmark_cli:benchmark",
    "export": "export.cli:export",
    "predict": "runtime.cli:predict",
    "serve": "runtime.cli:serve",
    "bench": "runtime.cli:bench",
    "demo-web": "runtime.web:demo_web",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name, target in COMMANDS.items() if _exists(target))

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None or not _exists(target):
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GendistillError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gendistill")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool):
    """Compress a text classifier into a tiny, fast student by generation-distillation."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    for noisy in ("transformers", "torch", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


if __name__ == "__main__":
    main()
