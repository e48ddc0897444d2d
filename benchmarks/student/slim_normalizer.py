"""The slimmed normalisation rules on a finished run's tokenizers: bytes, rules kept, and the ids against the full rules.

For each tokenizer.model of the run's two students (as the pipeline built it, slimmed or not), the same model with
sentencepiece's full nmt_nfkc rules and with them slimmed (`compressor.student.slim_normalizer`): the bytes of each,
how many rules each keeps, and how many texts get other ids from the slimmed one, over every text of the run (train,
dev, test, unlabeled and synthetic) and over every rule's source alone, between two letters and twice in a row. Then
the bundle's bytes (model.onnx + tokenizer.model, as the benchmarks count them) with each.

    python benchmarks/student/slim_normalizer.py runs/demo > benchmarks/student/slim-normalizer.json

Light (about a minute on one core).
"""

import json
import sys
import time
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from gendistill.compressor.rundir import load_split
from gendistill.compressor.student import charsmap_rules, slim_normalizer
from gendistill.compressor.synthesize import load_synthetic

run = Path(sys.argv[1])
texts = [text for split in ("train", "dev", "test", "unlabeled") for text in load_split(run, split)[0]] + load_synthetic(run)
full_rules = None
results = {"run_dir": str(run), "texts": len(texts), "tokenizers": {}}
for student in ("student", "labeled_only"):
    path = run / "distill" / student / "tokenizer.model"
    proto = pb.ModelProto()
    proto.ParseFromString(path.read_bytes())
    if full_rules is None:  # the full nmt_nfkc rules, from a model sentencepiece trains by default
        import io

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts[:2000]), model_writer=model, model_type="unigram", vocab_size=100,
                                       hard_vocab_limit=False, minloglevel=2, num_threads=1)
        default = pb.ModelProto()
        default.ParseFromString(model.getvalue())
        full_spec = default.normalizer_spec
        full_rules = charsmap_rules(full_spec.precompiled_charsmap)
    proto.normalizer_spec.name, proto.normalizer_spec.precompiled_charsmap = full_spec.name, full_spec.precompiled_charsmap
    full_bytes = proto.SerializeToString()
    tick = time.time()
    slim_normalizer(proto)
    seconds = time.time() - tick
    slim_bytes = proto.SerializeToString()
    full, slim = spm.SentencePieceProcessor(model_proto=full_bytes), spm.SentencePieceProcessor(model_proto=slim_bytes)
    probes = [probe for source in full_rules for probe in (source, f"a{source}b", source + source)]
    results["tokenizers"][student] = {
        "pieces": len(proto.pieces), "rules_full": len(full_rules), "rules_kept": len(charsmap_rules(proto.normalizer_spec.precompiled_charsmap)),
        "charsmap_bytes_full": len(full_spec.precompiled_charsmap), "charsmap_bytes_slim": len(proto.normalizer_spec.precompiled_charsmap),
        "model_bytes_full": len(full_bytes), "model_bytes_slim": len(slim_bytes), "slim_seconds": seconds,
        "run_texts_with_other_ids": sum(full.encode(t) != slim.encode(t) for t in texts),
        "rule_probes": len(probes), "rule_probes_with_other_ids": sum(full.encode(t) != slim.encode(t) for t in probes),
    }
    print(student, results["tokenizers"][student], file=sys.stderr, flush=True)
# The bundle's size as the benchmarks count it: model.onnx + tokenizer.model.
onnx_bytes = (run / "bundle" / "model.onnx").stat().st_size
shipped_student = json.loads((run / "report.json").read_text())["shipped"]["student"]
row = results["tokenizers"]["labeled_only" if shipped_student == "labeled-only" else "student"]
results["bundle"] = {"student": shipped_student, "model_onnx_bytes": onnx_bytes,
                     "tokenizer_bytes_as_built": (run / "bundle" / "tokenizer.model").stat().st_size,
                     "bytes_full_rules": onnx_bytes + row["model_bytes_full"], "bytes_slim_rules": onnx_bytes + row["model_bytes_slim"]}
json.dump(results, sys.stdout, indent=1)
