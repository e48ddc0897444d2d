"""Ways to run a finished run's teacher on CPU, side by side: texts/s and fidelity to fp32 torch.

On 640 of the run's synthetic texts (from the 1,001st), batches of 64 sorted by length, as annotate runs them, with
torch's threads (2 here): fp32 torch; torch under bfloat16 autocast; onnxruntime fp32, plain and after
onnxruntime's transformer optimizer (its fusions); onnxruntime int8 by the `ffn-fp32` recipe (and the same on the
optimized graph); fp32 torch again, last (the first figure is a cold machine's). Fidelity: mean |probability
difference| and argmax agreement with fp32 torch. The seconds of exporting the teacher to ONNX and of quantizing it.
Then, on CPUs with native bfloat16: a fine-tuning step (forward, backward and AdamW on 16 training texts, as the
teacher stage takes them) in fp32 and under bfloat16 autocast, alternated 6 times each so both see the same machine;
the median seconds per step.

    python benchmarks/teacher/engines.py runs/demo-20k > benchmarks/teacher/engines.json      # a Xeon with AMX
    python benchmarks/teacher/engines.py runs/demo > benchmarks/teacher/engines-avx2.json      # an EPYC with AVX2 alone

Heavy (about 5 minutes on 2 cores): run nothing else beside it.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gendistill.compressor.annotate import probability_difference
from gendistill.compressor.rundir import load_split
from gendistill.compressor.synthesize import load_synthetic
from gendistill.compressor.teacher import load_teacher, teacher_logits
from gendistill.compressor.teacher_onnx import OnnxTeacher, export_teacher, quantize_teacher
from gendistill.compressor.training import int8_dot_product, native_bf16

run = Path(sys.argv[1])
model, tokenizer = load_teacher(run)
texts = load_synthetic(run)[1000:1640]
results = {"run_dir": str(run), "texts": len(texts), "threads": torch.get_num_threads(),
           "cpu": {"capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(), "vnni": int8_dot_product()},
           "engines": {}}
reference = None


def record(name, compute):
    global reference
    tick = time.time()
    logits = compute()
    entry = {"texts_per_second": len(texts) / (time.time() - tick)}
    if reference is None:
        reference = logits
    else:
        entry["mean_probability_difference"] = probability_difference(logits, reference)
        entry["argmax_agreement"] = float((logits.argmax(1) == reference.argmax(1)).mean())
    results["engines"][name] = entry
    print(name, entry, file=sys.stderr, flush=True)


record("torch-fp32", lambda: teacher_logits(model, tokenizer, texts, 128))
record("torch-bf16", lambda: teacher_logits(model, tokenizer, texts, 128, bf16=True))
with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    tick = time.time()
    export_teacher(model, work / "teacher.onnx")
    results["export_seconds"] = time.time() - tick
    record("onnxruntime-fp32", lambda: OnnxTeacher(work / "teacher.onnx", tokenizer, torch.get_num_threads()).logits(texts, 128))
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(work / "teacher.onnx"), model_type="bert", num_heads=12, hidden_size=768)
    results["optimizer_fusions"] = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(work / "optimized.onnx"))
    record("onnxruntime-fp32-optimized", lambda: OnnxTeacher(work / "optimized.onnx", tokenizer, torch.get_num_threads()).logits(texts, 128))
    tick = time.time()
    quantize_teacher(work / "teacher.onnx", work / "int8.onnx", "ffn-fp32")
    results["quantize_seconds"] = time.time() - tick
    record("onnxruntime-int8-ffn-fp32", lambda: OnnxTeacher(work / "int8.onnx", tokenizer, torch.get_num_threads()).logits(texts, 128))
    try:
        quantize_teacher(work / "optimized.onnx", work / "optimized-int8.onnx", "ffn-fp32")
        record("onnxruntime-int8-ffn-fp32-optimized", lambda: OnnxTeacher(work / "optimized-int8.onnx", tokenizer, torch.get_num_threads()).logits(texts, 128))
    except Exception as error:  # measured: onnxruntime's quantizer cannot type the optimizer's fused graph
        results["optimized_int8_error"] = str(error).split(".")[0]
# fp32 torch again, last: the first engine timed runs on a cold machine, so its second figure is the fairer reference.
record("torch-fp32-again", lambda: teacher_logits(model, tokenizer, texts, 128))
if not native_bf16():  # emulated bfloat16 inference measured 7.5x slower than fp32 (engines-avx2.json): nothing to time
    json.dump(results, sys.stdout, indent=1)
    sys.exit()

train_texts = load_split(run, "train")[0]
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)  # a real step that barely moves the weights
steps = {"fp32": [], "bf16": []}
model.train()
for step in range(12):
    precision = ("fp32", "bf16")[step % 2]
    encoded = tokenizer(train_texts[16 * (step // 2): 16 * (step // 2 + 1)], truncation=True, max_length=128, padding=True, return_tensors="pt")
    tick = time.time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model.raw_logits(encoded["input_ids"], encoded["attention_mask"]).float()
    torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long)).backward()
    optimizer.step()
    optimizer.zero_grad()
    steps[precision].append(time.time() - tick)
results["train_step_seconds"] = {precision: float(np.median(times)) for precision, times in steps.items()}
print("train step", results["train_step_seconds"], file=sys.stderr, flush=True)
json.dump(results, sys.stdout, indent=1)
