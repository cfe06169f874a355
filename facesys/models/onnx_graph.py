"""Reading ONNX face models: a graph any runtime can take, with plain fp32 weights.

Quantised exports (OpenCV Zoo's block-quantised ``*_int8bq.onnx``) keep int8 weights behind
``DequantizeLinear`` nodes and declare the weights as graph inputs; onnxruntime and onnx2torch
refuse them as they are. :func:`read_onnx` evaluates every node that depends on weights alone once
(with onnx's reference evaluator), so the result holds fp32 initializers, takes one image input
with a free batch size and uses an opset onnx2torch knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facesys.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import onnx

TARGET_OPSET = 17  # the newest opset onnx2torch converts every operator of
FOLD_OPSET = 21  # weight-only nodes are evaluated at this opset or the model's, if newer


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """The model at ``path`` with weight-only subgraphs folded to fp32 initializers, the batch axis
    of its input and outputs free (``N``) and its default-domain opset converted to ``TARGET_OPSET``.

    ModelError (one line naming the file) for a file onnx cannot read or check.
    """
    import onnx
    from onnx import version_converter

    path = Path(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise ModelError(f"{path}: ONNX file not found") from None
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        folded = _fold_constants(model)
    except Exception as exc:  # the reference evaluator raises RuntimeError, NotImplementedError, ...
        raise ModelError(f"{path}: cannot evaluate the graph's weights ({_first_line(exc)})") from None
    try:
        if _opset(folded) > TARGET_OPSET:
            folded = version_converter.convert_version(folded, TARGET_OPSET)
        onnx.checker.check_model(folded)
    except Exception as exc:
        raise ModelError(f"{path}: cannot convert the graph to opset {TARGET_OPSET} ({_first_line(exc)})") from None
    return folded


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The model's initializers by name (arrays the graph owns)."""
    from onnx import numpy_helper

    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose nodes fed by initializers alone are replaced by their outputs."""
    import numpy as np
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {tensor.name for tensor in graph.initializer}
    folded, kept = [], []
    for node in graph.node:  # nodes are topologically sorted in a valid model
        if all(name in known or name == "" for name in node.input):
            folded.append(node)
            known.update(node.output)
        else:
            kept.append(node)
    values: dict[str, np.ndarray] = {}
    if folded:
        outputs = [name for node in folded for name in node.output]
        subgraph = helper.make_graph(
            folded,
            "weights",
            [],
            [helper.make_tensor_value_info(name, 0, None) for name in outputs],
            initializer=list(graph.initializer),
        )
        # Evaluated at an opset the reference evaluator implements for every version of these nodes
        # (DequantizeLinear's older forms are special cases of opset 21's).
        opset = [helper.make_opsetid("", max(_opset(model), FOLD_OPSET))]
        evaluator = ReferenceEvaluator(helper.make_model(subgraph, opset_imports=opset, ir_version=max(model.ir_version, 10)))
        values = dict(zip(outputs, evaluator.run(None, {}), strict=True))
    used = {name for node in kept for name in node.input} | {output.name for output in graph.output}
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in values.items() if name in used]
    initializers += [tensor for tensor in graph.initializer if tensor.name in used]
    constant = {tensor.name for tensor in initializers}
    # Weights declared as graph inputs (with initializers) drop out; the real inputs stay.
    inputs = [value for value in graph.input if value.name in used and value.name not in constant]
    for value in (*inputs, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    result = helper.make_graph(kept, graph.name, inputs, list(graph.output), initializer=initializers)
    return helper.make_model(result, opset_imports=model.opset_import, ir_version=model.ir_version)


def _opset(model: onnx.ModelProto) -> int:
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
