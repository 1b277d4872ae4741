"""ONNX (optional extra ``export``): tf2onnx on the probabilities-only SavedModel, run with onnxruntime.

The ONNX graph takes TensorFlow's NHWC input: ``inputs`` float32 ``[batch, size, size, 3]``
(preprocessed), output ``probabilities`` float32 ``[batch, classes]``. Inside, tf2onnx's optimiser moves
the one Transpose to the input, so every convolution runs channels-first as in a PyTorch export.

A pre-activation unit's first BatchNorm acts on the sum of the previous unit and cannot fold into a
convolution; TensorFlow computes it as ``x * scale + shift``, which tf2onnx writes as a Mul and an Add.
onnxruntime's NCHWc layout fuses a BatchNormalization node (with the ReLU after it) into one kernel
but leaves the Add alone, with a layout reorder on each side of it (its profiler showed the Adds,
ReLUs and reorders at a third of the time of the convolutions). ``affine_to_batchnorm`` rewrites each
such pair into a BatchNormalization of mean 0, variance 1 and epsilon 0, which computes the same
``x * scale + shift``.
"""

import numpy as np

import keras_preresnet.export.parity as parity
from keras_preresnet.runtimes import OnnxModel, require_extra

FILENAME = "model.onnx"
OPSET = 17


def convert(saved_model_dir, path, signature="probabilities", opset=OPSET):
    """Converts the float SavedModel's ``signature`` to an ONNX file at ``path``."""
    require_extra("onnx", "ONNX export")
    require_extra("tf2onnx", "ONNX export")
    import onnx
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    graph_def, inputs, outputs, tensors_to_rename = tf_loader.from_saved_model(
        saved_model_dir, None, None, tag="serve", signatures=[signature], return_tensors_to_rename=True
    )
    model_proto, _ = tf2onnx_convert.from_graph_def(
        graph_def,
        input_names=inputs,
        output_names=outputs,
        opset=opset,
        tensors_to_rename=tensors_to_rename,
    )
    affine_to_batchnorm(model_proto)
    onnx.save(model_proto, str(path))
    return path


def _channel_constant(initializers, name):
    """The per-channel values of a constant of shape ``[1, C, 1, 1]`` (or ``[C, 1, 1]``), else None."""
    from onnx import numpy_helper

    if name not in initializers:
        return None
    value = numpy_helper.to_array(initializers[name])
    if value.ndim not in (3, 4) or value.shape[-2:] != (1, 1) or (value.ndim == 4 and value.shape[0] != 1):
        return None
    return value.reshape(-1)


def affine_to_batchnorm(model_proto):
    """Rewrites ``Add(Mul(x, scale), shift)`` with per-channel constants into BatchNormalization, in place.

    Returns the number of pairs rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {output.name for output in graph.output}
    rewritten, dropped = 0, set()
    new_nodes = []
    by_output = {node.output[0]: node for node in graph.node if node.op_type == "Mul"}
    for node in graph.node:
        if id(node) in dropped:
            continue
        if node.op_type == "Add":
            mul_name = next((name for name in node.input if name in by_output), None)
            shift_name = next((name for name in node.input if name != mul_name), None)
            mul = by_output.get(mul_name)
            if mul is not None and len(consumers.get(mul_name, ())) == 1 and mul_name not in outputs:
                scale_name = next((name for name in mul.input if name in initializers), None)
                x_name = next((name for name in mul.input if name != scale_name), None)
                scale = None if scale_name is None else _channel_constant(initializers, scale_name)
                shift = _channel_constant(initializers, shift_name)
                if scale is not None and shift is not None and scale.shape == shift.shape and x_name:
                    prefix = node.output[0].replace(":", "_") + "/bn"
                    params = {
                        "scale": scale, "bias": shift,
                        "mean": np.zeros_like(scale), "var": np.ones_like(scale),
                    }
                    for key, value in params.items():
                        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), f"{prefix}_{key}"))
                    new_nodes.append(helper.make_node(
                        "BatchNormalization", [x_name] + [f"{prefix}_{key}" for key in params], list(node.output),
                        name=prefix, epsilon=0.0,
                    ))
                    dropped.add(id(mul))
                    rewritten += 1
                    continue
        new_nodes.append(node)
    new_nodes = [node for node in new_nodes if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten


def verify(path, reference, preprocessed):
    outputs = OnnxModel(path).predict(preprocessed)
    return parity.compare("onnx", path, reference, outputs, parity.FLOAT_TOLERANCE)
