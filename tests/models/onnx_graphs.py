"""Tiny ONNX embedding graphs built in the tests (no downloads): Conv -> Relu -> GlobalAveragePool ->
Flatten -> Gemm on (N, 3, S, S) -> (N, D), with switches for each thing facesys must refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def embedding_graph(
    path: Path,
    *,
    size: int = 16,
    dim: int = 8,
    seed: int = 0,
    input_shape: tuple | None = None,
    normalise: bool = False,
    quantised: bool = False,
    nan_weight: bool = False,
    operator: str | None = None,
    second_input: bool = False,
    second_output: bool = False,
    batch_fixed: bool = False,
    nan_output: bool = False,
    opset: int = 17,
) -> Path:
    """Write a random embedding graph to ``path`` and return it.

    ``normalise``: the graph starts with Sub 127.5 / Mul 1/128 (as SFace's does); ``quantised``:
    the conv weights are int8 behind DequantizeLinear and also declared as a graph input (as
    OpenCV Zoo's int8bq files do); ``operator``: a unary operator inserted after the conv.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32) * 0.3
    gemm = rng.normal(size=(dim, 4)).astype(np.float32)
    if nan_weight:
        gemm[0, 0] = np.nan
    shape = input_shape or ("N", 3, size, size)
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))]
    initializers, nodes = [numpy_helper.from_array(gemm, "gemm")], []
    x = "image"
    if normalise:
        initializers += [
            numpy_helper.from_array(np.float32(127.5), "mean"),
            numpy_helper.from_array(np.float32(1 / 128), "scale"),
        ]
        nodes += [helper.make_node("Sub", ["image", "mean"], ["centred"]), helper.make_node("Mul", ["centred", "scale"], ["x"])]
        x = "x"
    if quantised:
        scale = np.float32(np.abs(conv).max() / 127)
        initializers += [
            numpy_helper.from_array(np.round(conv / scale).astype(np.int8), "conv_q"),
            numpy_helper.from_array(scale, "conv_scale"),
            numpy_helper.from_array(np.int8(0), "conv_zero"),
        ]
        inputs.append(helper.make_tensor_value_info("conv_q", TensorProto.INT8, list(conv.shape)))
        nodes.append(helper.make_node("DequantizeLinear", ["conv_q", "conv_scale", "conv_zero"], ["conv"]))
    else:
        initializers.append(numpy_helper.from_array(conv, "conv"))
    nodes.append(helper.make_node("Conv", [x, "conv"], ["c"], pads=[1, 1, 1, 1]))
    features = "c"
    if operator:
        nodes.append(helper.make_node(operator, ["c"], ["c2"]))
        features = "c2"
    nodes += [
        helper.make_node("Relu", [features], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "gemm"], ["y"], transB=1),
    ]
    out = "y"
    if second_input:
        inputs.append(helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["N", dim]))
        nodes.append(helper.make_node("Add", ["y", "offset"], ["y2"]))
        out = "y2"
    if batch_fixed:  # a graph exported with batch size 1 baked into a Reshape
        initializers.append(numpy_helper.from_array(np.array([1, -1], np.int64), "one_row"))
        nodes.append(helper.make_node("Reshape", [out, "one_row"], ["rows"]))
        out = "rows"
    if nan_output:
        initializers.append(numpy_helper.from_array(np.float32(1e6), "big"))
        nodes += [helper.make_node("Sub", [out, "big"], ["negative"]), helper.make_node("Log", ["negative"], ["log"])]
        out = "log"
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", dim])]
    if second_output:
        outputs.append(helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 4]))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10 if opset > 20 else 8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
