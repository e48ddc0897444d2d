"""Does a 4-bit subword table run where the bundle runs? A probe for a larger student in the same bytes.

Builds a 1,000 x 64 table quantized to int4 in blocks of 32 (ONNX opset 21's blocked DequantizeLinear, two values a
byte in the file) followed by the Gather a student's embedding is, and runs it in onnxruntime (CPU) and, where
`mobile_demo/node_modules` is installed (`make browser-deps`), in onnxruntime-web's wasm backend under Node. Prints
the file's bytes and each runtime's largest difference from the dequantized table (0 means it runs it exactly).

    python benchmarks/student/int4_table_check.py
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROWS, DIMS, BLOCK = 1000, 64, 32
IDS = [0, 5, 999]
DEMO = Path(__file__).resolve().parents[2] / "mobile_demo"

NODE_SCRIPT = """  // node -e SCRIPT DEMO_DIR MODEL IDS: process.argv[1..3]
const ort = require(process.argv[1] + '/node_modules/onnxruntime-web');
const fs = require('fs');
(async () => {
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(fs.readFileSync(process.argv[2]));
  const ids = BigInt64Array.from(JSON.parse(process.argv[3]).map(BigInt));
  const result = await session.run({ids: new ort.Tensor('int64', ids, [ids.length])});
  console.log(JSON.stringify(Array.from(result.out.data)));
})();
"""


def int4_table_model(table: np.ndarray) -> tuple[onnx.ModelProto, np.ndarray]:
    """The table as int4 blocks with one float scale each, dequantized and gathered; and the table it dequantizes to."""
    rows, dims = table.shape
    blocks = table.reshape(rows, dims // BLOCK, BLOCK)
    scale = (np.abs(blocks).max(-1) / 7).astype(np.float32)
    quantized = np.clip(np.round(blocks / scale[..., None]), -8, 7).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["table", "scale"], ["vectors"], axis=1, block_size=BLOCK),
         helper.make_node("Gather", ["vectors", "ids"], ["out"], axis=0)],
        "int4_table",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, dims])],
        # onnx stores an ml_dtypes int4 array packed, two values a byte
        initializer=[numpy_helper.from_array(quantized.reshape(rows, dims).astype(ml_dtypes.int4), "table"),
                     numpy_helper.from_array(scale, "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model, (quantized * scale[..., None]).reshape(rows, dims)


def main():
    table = np.random.default_rng(0).standard_normal((ROWS, DIMS)).astype(np.float32)
    model, dequantized = int4_table_model(table)
    expected = dequantized[IDS]
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "int4_table.onnx"
        onnx.save(model, path)
        report = {"table": [ROWS, DIMS], "block": BLOCK, "file_bytes": path.stat().st_size, "int8_bytes": ROWS * DIMS,
                  "mean_abs_error_vs_fp32": float(np.abs(dequantized - table).mean())}
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"ids": np.array(IDS, dtype=np.int64)})[0]
        report[f"onnxruntime {ort.__version__}"] = float(np.abs(got - expected).max())
        if shutil.which("node") and (DEMO / "node_modules" / "onnxruntime-web").is_dir():
            version = json.loads((DEMO / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"]
            out = subprocess.run(["node", "-e", NODE_SCRIPT, str(DEMO), str(path), json.dumps(IDS)],
                                 capture_output=True, text=True, check=True).stdout
            got = np.array(json.loads(out), dtype=np.float32).reshape(expected.shape)
            report[f"onnxruntime-web {version} (wasm, Node)"] = float(np.abs(got - expected).max())
        else:
            report["onnxruntime-web"] = "not run: needs node and mobile_demo/node_modules (make browser-deps)"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
