"""The deployable bundle: one documented directory layout, a manifest, and its verification.

A bundle directory holds:

    bundle.json      manifest: schema version, labels, preprocessing, model I/O, file hashes, metrics
    model.onnx       the student: int8 static QDQ when it passes the export's checks against fp32, else fp32
    tokenizer.model  the student's sentencepiece model, byte for byte the one it was trained with
    labels.json      the label strings, in output order
    golden.jsonl     {"text", "ids", "probabilities"} per line: what every runtime must reproduce
    model.fp32.onnx  optional (`--keep-fp32`, when model.onnx is int8)
    model.ort, required_operators_and_types.config   optional (`--mobile`)
    settings.json, metrics.json   the export stage's record (how it was made, its checks); not needed to predict

`bundle.json["files"]` maps every other file to its SHA-256 and size; `load_manifest` checks them.
The files a runtime opens (`model.file`, `tokenizer.file`) must be among them, and every listed file
must be a plain name inside the bundle (no path, no `..`) and a regular file, not a symbolic link: a
bundle is copied, uploaded and served as a directory, and a link would carry the path, not the bytes
that were checked (HuggingFace's cache is made of links; `snapshot_download(local_dir=...)` or `cp -L`
gives real files).
This module is part of the core install: it needs only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gendistill.runtime.errors import GendistillError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Layout:
    """File names inside a bundle directory."""

    manifest: str = "bundle.json"
    model: str = "model.onnx"
    model_fp32: str = "model.fp32.onnx"
    model_ort: str = "model.ort"
    ort_operators: str = "required_operators_and_types.config"
    tokenizer: str = "tokenizer.model"
    labels: str = "labels.json"
    golden: str = "golden.jsonl"

    @property
    def required(self) -> tuple[str, ...]:
        return (self.manifest, self.model, self.tokenizer, self.labels, self.golden)


LAYOUT = Layout()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file ordinary permissions (mkstemp makes it owner-only), then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_atomic(path: str | Path, write, binary: bool = False) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename: readers never see half a file, and a
    write that fails leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text))


# Characters JSON leaves raw but that many line splitters (Python's str.splitlines, some editors and log tools)
# take for line breaks; escaped, a JSONL record stays one line for any reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(obj) -> str:
    """One JSONL record (no newline): UTF-8 text kept readable, every line-breaking character escaped."""
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS)


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_manifest(bundle_dir: str | Path, manifest: dict) -> dict:
    """Hash every file in `bundle_dir` (but the manifest itself) into `manifest["files"]` and save it."""
    bundle_dir = Path(bundle_dir)
    files = {
        entry.name: file_record(entry)
        for entry in sorted(bundle_dir.iterdir())
        if entry.is_file() and entry.name != LAYOUT.manifest and not entry.name.startswith(".")
    }
    manifest = {"schema_version": SCHEMA_VERSION, **manifest, "files": files}
    write_json_atomic(bundle_dir / LAYOUT.manifest, manifest)
    return manifest


def load_manifest(bundle_dir: str | Path, verify: bool = True) -> dict:
    """Read `bundle.json` and check its structure: schema version, file list, the files a runtime opens,
    and (with `verify`) every file's SHA-256 and that labels.json agrees with it."""
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / LAYOUT.manifest
    if not bundle_dir.is_dir():
        raise GendistillError(f"Bundle directory {bundle_dir} does not exist; pass the folder `gendistill export` wrote.")
    if manifest_path.is_symlink():
        raise GendistillError(f"{manifest_path} is a symbolic link; a bundle holds real files, so copy the file itself (cp -L) in its place.")
    if not manifest_path.is_file():
        raise GendistillError(f"{bundle_dir} has no {LAYOUT.manifest}, so it is not a gendistill bundle; export one with `gendistill export RUN_DIR --out BUNDLE`.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GendistillError(f"{manifest_path} is not valid JSON ({exc}); re-export the bundle.") from None
    except OSError as exc:
        raise GendistillError(f"{manifest_path} cannot be read ({exc}); check its permissions or re-copy the bundle.") from None
    # bool is an int in Python: `true` must not pass for version 1.
    if not isinstance(manifest, dict) or type(manifest.get("schema_version")) is not int:
        raise GendistillError(f"{manifest_path} has no integer schema_version; re-export the bundle.")
    version = manifest["schema_version"]
    if version > SCHEMA_VERSION:
        raise GendistillError(
            f"Bundle schema version {version} is newer than this gendistill supports ({SCHEMA_VERSION}); upgrade gendistill."
        )
    if version < SCHEMA_VERSION:
        raise GendistillError(f"Bundle schema version {version} is too old for this gendistill ({SCHEMA_VERSION}); re-export the bundle.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise GendistillError(f"{manifest_path} lists no files; re-export the bundle.")
    for name, record in files.items():
        if not _is_plain_name(name):
            raise GendistillError(f"{manifest_path} lists the file {name!r}, which is not a plain name inside the bundle; re-export the bundle.")
        if not (isinstance(record, dict) and isinstance(record.get("sha256"), str) and type(record.get("bytes")) is int):
            raise GendistillError(f"{manifest_path} records no SHA-256 and size for {name}; re-export the bundle.")
    for name in LAYOUT.required:
        if name != LAYOUT.manifest and name not in files:
            raise GendistillError(f"Bundle {bundle_dir} does not list required file {name}; re-export the bundle.")
    # The runtime opens these names; one outside the hashed list would be loaded unchecked.
    for section in ("model", "tokenizer"):
        name = opened_file(manifest, section)
        if not isinstance(name, str) or name not in files:
            raise GendistillError(
                f"{manifest_path} names {name!r} as the {section} file, which is not among its hashed files; re-export the bundle."
            )
    for name in files:
        path = bundle_dir / name
        # Checked even without `verify` (it is one stat per file): a link may point anywhere.
        if path.is_symlink():
            raise GendistillError(f"Bundle file {path} is a symbolic link; a bundle holds real files, so copy the file itself (cp -L) in its place.")
        if not path.is_file():
            raise GendistillError(f"Bundle file {path} is missing or not a regular file; copy the whole bundle directory or re-export it.")
    if verify:
        for name, record in files.items():
            path = bundle_dir / name
            try:
                matches = os.path.getsize(path) == record["bytes"] and sha256_file(path) == record["sha256"]
            except OSError as exc:
                raise GendistillError(f"Bundle file {path} cannot be read ({exc}); check its permissions or re-copy the bundle.") from None
            if not matches:
                raise GendistillError(
                    f"Bundle file {path} does not match the SHA-256 recorded in {LAYOUT.manifest}; it was changed or damaged, so re-export or re-copy the bundle."
                )
        # labels.json is for apps that read only the labels; it must say what bundle.json says.
        try:
            labels = json.loads((bundle_dir / LAYOUT.labels).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            labels = None
        if labels != manifest.get("labels"):
            raise GendistillError(f"{bundle_dir / LAYOUT.labels} disagrees with the labels in {LAYOUT.manifest}; re-export the bundle.")
    return manifest


def opened_file(manifest: dict, section: str):
    """The file name bundle.json gives for "model" or "tokenizer" (the layout's name when it gives none);
    `load_manifest` has checked that it is one of the hashed files."""
    entry = manifest.get(section)
    default = LAYOUT.model if section == "model" else LAYOUT.tokenizer
    return entry.get("file", default) if isinstance(entry, dict) else default


def _is_plain_name(name: str) -> bool:
    """A file directly inside the bundle: no directory part, no `..`, nothing a path would read as a root."""
    return bool(name) and name not in (".", "..") and not any(char in name for char in "/\\\0:") and Path(name).name == name
