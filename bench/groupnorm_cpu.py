"""Why fastgen's graphs keep GroupNorm as the exporter writes it (Reshape → InstanceNormalization → Reshape → Mul → Add)
rather than one opset-21 GroupNormalization node: ONNX Runtime's CPU provider has no GroupNormalization kernel and
expands the op's function body. One GroupNorm of the paper network's sizes, both forms, timed interleaved.

    python3 bench/groupnorm_cpu.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def instance_norm_form(channels: int, groups: int) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array([0, groups, -1], np.int64), "grouped"),
             numpy_helper.from_array(np.ones(groups, np.float32), "one"), numpy_helper.from_array(np.zeros(groups, np.float32), "zero"),
             numpy_helper.from_array(np.ones((channels, 1, 1), np.float32), "gamma"),
             numpy_helper.from_array(np.zeros((channels, 1, 1), np.float32), "beta")]  # fmt: skip
    nodes = [helper.make_node("Reshape", ["x", "grouped"], ["r"]),
             helper.make_node("InstanceNormalization", ["r", "one", "zero"], ["n"], epsilon=1e-6),
             helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Reshape", ["n", "shape"], ["r2"]),
             helper.make_node("Mul", ["r2", "gamma"], ["m"]), helper.make_node("Add", ["m", "beta"], ["y"])]  # fmt: skip
    return _model(nodes, inits, channels, 17)


def group_norm_form(channels: int, groups: int) -> onnx.ModelProto:
    node = helper.make_node("GroupNormalization", ["x", "gamma", "beta"], ["y"], num_groups=groups, epsilon=1e-6)
    inits = [numpy_helper.from_array(np.ones(channels, np.float32), "gamma"), numpy_helper.from_array(np.zeros(channels, np.float32), "beta")]
    return _model([node], inits, channels, 21)


def _model(nodes: list, inits: list, channels: int, opset: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", channels, "h", "w"])
    model = helper.make_model(helper.make_graph(nodes, "groupnorm", [x], [y], inits), opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def session(model: onnx.ModelProto, threads: int) -> tuple[ort.InferenceSession, int]:
    """The session and the node count ONNX Runtime runs after its optimisations (saved at level 'extended')."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        saved = ort.SessionOptions()
        saved.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        saved.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), saved, providers=["CPUExecutionProvider"])
        nodes = len(onnx.load(saved.optimized_model_filepath).graph.node)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]), nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    channels, groups, size = 128, 32, 64  # the paper network's first-stage GroupNorm at 64×64
    forms = {"InstanceNormalization form (opset 17)": instance_norm_form(channels, groups),
             "GroupNormalization (opset 21)": group_norm_form(channels, groups)}
    sessions = {name: session(model, args.threads) for name, model in forms.items()}
    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), GroupNorm C={channels}, G={groups}, {size}×{size}")
    for batch in (1, 4):
        x = np.random.default_rng(0).standard_normal((batch, channels, size, size), dtype=np.float32)
        outputs = [s.run(None, {"x": x})[0] for s, _ in sessions.values()]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeats):  # interleaved
            for name, (s, _) in sessions.items():
                start = time.perf_counter()
                for _ in range(10):
                    s.run(None, {"x": x})
                times[name].append((time.perf_counter() - start) / 10)
        print(f"batch {batch}: max |difference| {np.abs(outputs[0] - outputs[1]).max():.1e}")
        for name, (_, nodes) in sessions.items():
            print(f"  {name}: {statistics.median(times[name]) * 1e3:.3f} ms (median), {nodes} nodes after ORT's optimiser")


if __name__ == "__main__":
    main()
