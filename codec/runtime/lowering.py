"""A step graph's layers rewritten where its one frame makes them matrix-vector products.

A step graph codes one frame, so every time length in it is a constant. Some layers then see
exactly one kernel window: a Conv whose output is one frame (a SEANet encoder's last strided
conv, the conv on its latent), a ConvTranspose fed one frame (a decoder's first upsampling)
and an LSTM over one time step. ONNX Runtime runs these through its general kernels
(im2col, col2im, its LSTM loop), which cost more than a MatMul over the same weights; here
each becomes that MatMul:

    Conv          x (b, c, t), one window      -> Reshape (b, c k) @ W (c k, o) + bias
                  (depthwise)                  -> x (b, c, k) * W (c, k), summed over k, + bias
    ConvTranspose x (b, c, 1)                  -> Reshape (b, c) @ W (c, o k) + bias
    LSTM          x (1, b, i), h, c (1, b, h)  -> [x, h] @ [W R]^T + biases, then the gates

Rewrites go by operator type and the shapes the graph states, never by architecture; a layer
that does not fit (grouped but not depthwise, padded before its input, more than one window,
weights that are not constants) stays as it is. The graph computes the same function, up to
fp32 rounding. Needs onnx (the `onnx` extra).
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

# ops that move constant data; the exporter leaves some of them between an initializer and
# the layer that uses it (the LSTM's gate reordering), and they are folded here
_FOLDED = {"Cast", "Concat", "Constant", "Identity", "Reshape", "Slice", "Split", "Squeeze"}
_FOLDED |= {"Transpose", "Unsqueeze"}


class _Graph:
    """An ONNX graph's constants, shapes and fresh names while it is rewritten."""

    def __init__(self, model):
        self.opset = model.opset_import
        self.graph = model.graph
        inferred = onnx.shape_inference.infer_shapes(model).graph
        self.shapes = {
            info.name: [
                d.dim_value if d.HasField("dim_value") else None
                for d in info.type.tensor_type.shape.dim
            ]
            for info in [*inferred.value_info, *inferred.input, *inferred.output]
        }
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producers = {out: node for node in self.graph.node for out in node.output}
        self.added = []
        self._values, self._count = {}, 0

    def constant(self, name: str) -> np.ndarray | None:
        """The value of `name` where it is an initializer or folds from initializers."""
        if name in self._values:
            return self._values[name]
        value = None
        if name in self.initializers:
            value = numpy_helper.to_array(self.initializers[name])
        elif name in self.producers and self.producers[name].op_type in _FOLDED:
            node = self.producers[name]
            feeds = {i: self.constant(i) for i in node.input if i}
            if all(v is not None for v in feeds.values()):
                value = dict(zip(node.output, _evaluate(node, feeds, self.opset)))[name]
        self._values[name] = value
        return value

    def shape(self, name: str) -> list | None:
        return self.shapes.get(name)

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"lowered.{stem}.{self._count}"

    def add(self, array, stem: str) -> str:
        name = self.fresh(stem)
        self.added.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


def _evaluate(node, feeds: dict, opset) -> list:
    inputs = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in feeds.items()
    ]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output]
    model = helper.make_model(
        helper.make_graph([node], "fold", inputs, outputs), opset_imports=opset
    )
    return ReferenceEvaluator(model).run(None, feeds)


def _attributes(node) -> dict:
    found = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(found.get("auto_pad"), bytes):
        found["auto_pad"] = found["auto_pad"].decode()
    if isinstance(found.get("direction"), bytes):
        found["direction"] = found["direction"].decode()
    return found


def _plain(attributes: dict) -> bool:
    """One group, no padding inside the node."""
    return (
        attributes.get("group", 1) == 1
        and not any(attributes.get("pads", [0]))
        and attributes.get("auto_pad", "NOTSET") == "NOTSET"
    )


def _one_window(node, g: _Graph):
    """(weight (o, c / groups, k), span, dilation) of a Conv whose output is one frame that
    reads only the input (padding after it unread); else None."""
    attributes, weight, shape = _attributes(node), g.constant(node.input[1]), g.shape(node.input[0])
    if weight is None or weight.ndim != 3 or shape is None or len(shape) != 3 or shape[2] is None:
        return None
    left, right = attributes.get("pads", [0, 0])
    if left or attributes.get("auto_pad", "NOTSET") != "NOTSET":
        return None
    dilation, stride = attributes.get("dilations", [1])[0], attributes.get("strides", [1])[0]
    span = dilation * (weight.shape[2] - 1) + 1
    if not span <= shape[2] or (shape[2] + right - span) // stride != 0:
        return None
    return weight, span, dilation


_node = helper.make_node


def _conv(node, g: _Graph) -> list | None:
    """Conv (b, c, t) with one output frame -> its window (b, c k) @ W + bias -> (b, o, 1);
    a depthwise one -> (b, c, k) * W (c, k), summed over k, + bias."""
    found = _one_window(node, g)
    if found is None:
        return None
    weight, span, dilation = found
    groups = _attributes(node).get("group", 1)
    depthwise = groups == weight.shape[0] and weight.shape[1] == 1
    if groups != 1 and not depthwise:
        return None
    nodes, x = [], node.input[0]
    if dilation != 1 or g.shape(x)[2] != span:
        taps = g.fresh("taps")
        bounds = [g.add(np.array([v]), "slice") for v in (0, span, 2, dilation)]
        nodes.append(_node("Slice", [x, *bounds], [taps]))
        x = taps
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if depthwise:
        return _depthwise(node, g, x, weight, bias, nodes)
    flat, product = g.fresh("flat"), g.fresh("product")
    nodes.append(_node("Reshape", [x, g.add(np.array([0, -1]), "shape")], [flat]))
    matrix = weight.reshape(weight.shape[0], -1).T  # (c k, o), as the window flattens
    nodes.append(_node("MatMul", [flat, g.add(matrix, "weight")], [product]))
    if bias is not None:
        biased = g.fresh("biased")
        nodes.append(_node("Add", [product, bias], [biased]))
        product = biased
    frame = g.add(np.array([0, -1, 1]), "shape")
    return [*nodes, _node("Reshape", [product, frame], [node.output[0]])]


def _depthwise(node, g: _Graph, x: str, weight, bias: str | None, nodes: list) -> list | None:
    column = None if bias is None else g.constant(bias)
    if bias is not None and column is None:
        return None
    scaled = g.fresh("scaled")
    summed = node.output[0] if bias is None else g.fresh("summed")
    nodes.append(_node("Mul", [x, g.add(weight[:, 0], "weight")], [scaled]))
    nodes.append(_node("ReduceSum", [scaled, g.add(np.array([2]), "axes")], [summed], keepdims=1))
    if bias is not None:
        nodes.append(_node("Add", [summed, g.add(column.reshape(-1, 1), "bias")], [node.output[0]]))
    return nodes


def _conv_transpose(node, g: _Graph) -> list | None:
    """ConvTranspose (b, c, 1) -> Reshape (b, c) @ W (c, o k) -> (b, o, k) + bias."""
    attributes, weight, shape = _attributes(node), g.constant(node.input[1]), g.shape(node.input[0])
    if not _plain(attributes) or weight is None or weight.ndim != 3:
        return None
    if any(attributes.get("output_padding", [0])) or attributes.get("dilations", [1]) != [1]:
        return None
    if "output_shape" in attributes or shape is None or len(shape) != 3 or shape[2] != 1:
        return None
    bias = g.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        return None
    channels, kernel = weight.shape[1], weight.shape[2]
    flat, product = g.fresh("flat"), g.fresh("matmul")
    nodes = [
        _node("Reshape", [node.input[0], g.add(np.array([0, -1]), "shape")], [flat]),
        _node("MatMul", [flat, g.add(weight.reshape(weight.shape[0], -1), "weight")], [product]),
    ]
    frames = g.add(np.array([0, channels, kernel]), "shape")
    if bias is None:
        nodes.append(_node("Reshape", [product, frames], [node.output[0]]))
        return nodes
    unbiased = g.fresh("unbiased")
    nodes.append(_node("Reshape", [product, frames], [unbiased]))
    nodes.append(_node("Add", [unbiased, g.add(bias.reshape(-1, 1), "bias")], [node.output[0]]))
    return nodes


def _lstm(node, g: _Graph) -> list | None:
    """One forward LSTM step, gates (i, o, f, c) as ONNX orders them, default activations."""
    attributes = _attributes(node)
    x, w, r, b, lengths, h0, c0, peepholes = [*node.input, *[""] * 8][:8]
    shape = g.shape(x)
    if attributes.get("layout", 0) != 0 or attributes.get("direction", "forward") != "forward":
        return None
    if {"activations", "clip"} & attributes.keys() or attributes.get("input_forget", 0):
        return None
    if lengths or peepholes or not h0 or not c0 or shape is None or shape[0] != 1:
        return None
    weights = [g.constant(name) if name else None for name in (w, r, b)]
    if weights[0] is None or weights[1] is None or (b and weights[2] is None):
        return None
    w, r = weights[0][0], weights[1][0]  # (4 hidden, input), (4 hidden, hidden)
    hidden = r.shape[1]
    bias = weights[2][0] if b else np.zeros(8 * hidden, np.float32)
    first = g.add(np.array([0]), "axes")
    step, h, c, joined, gates, biased = (g.fresh(s) for s in ("x", "h", "c", "xh", "gates", "b"))
    i, o, f, z = (g.fresh(s) for s in ("i", "o", "f", "z"))
    si, so, sf, tz, kept, added, cell, tc, out = (
        g.fresh(s) for s in ("si", "so", "sf", "tz", "kept", "added", "cell", "tc", "h_new")
    )
    nodes = [
        _node("Squeeze", [x, first], [step]),
        _node("Squeeze", [h0, first], [h]),
        _node("Squeeze", [c0, first], [c]),
        _node("Concat", [step, h], [joined], axis=1),
        _node("MatMul", [joined, g.add(np.concatenate([w, r], 1).T, "weight")], [gates]),
        _node("Add", [gates, g.add(bias[: 4 * hidden] + bias[4 * hidden :], "bias")], [biased]),
        _node("Split", [biased], [i, o, f, z], axis=1, num_outputs=4),
        _node("Sigmoid", [i], [si]),
        _node("Sigmoid", [o], [so]),
        _node("Sigmoid", [f], [sf]),
        _node("Tanh", [z], [tz]),
        _node("Mul", [sf, c], [kept]),
        _node("Mul", [si, tz], [added]),
        _node("Add", [kept, added], [cell]),
        _node("Tanh", [cell], [tc]),
        _node("Mul", [so, tc], [out]),
    ]
    y, y_h, y_c = [*node.output, "", ""][:3]
    if y:  # (seq 1, directions 1, b, hidden)
        nodes.append(_node("Unsqueeze", [out, g.add(np.array([0, 1]), "axes")], [y]))
    if y_h:
        nodes.append(_node("Unsqueeze", [out, first], [y_h]))
    if y_c:
        nodes.append(_node("Unsqueeze", [cell, first], [y_c]))
    return nodes


_REWRITES = {"Conv": _conv, "ConvTranspose": _conv_transpose, "LSTM": _lstm}


def _live(nodes: list, outputs: set) -> list:
    """`nodes` less those whose outputs nothing reads (what computed a rewritten layer's
    weights), in order; all of them where a node holds a subgraph (which may read names
    its inputs do not list)."""
    if any(a.g.node or a.graphs for node in nodes for a in node.attribute):
        return nodes
    read, kept = set(outputs), []
    for node in reversed(nodes):
        if any(name in read for name in node.output):
            kept.append(node)
            read.update(node.input)
    return kept[::-1]


def lower_step_graph(model):
    """A copy of `model` (an onnx.ModelProto of a step graph) with its one-window layers as
    MatMuls; returns (copy, Counter of the op types rewritten). Nodes and initializers
    nothing reads any more are dropped."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    model = copy
    g = _Graph(model)
    nodes, rewritten = [], collections.Counter()
    for node in model.graph.node:
        rewrite = _REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        replacement = rewrite(node, g) if rewrite else None
        if replacement is None:
            nodes.append(node)
        else:
            nodes.extend(replacement)
            rewritten[node.op_type] += 1
    graph = model.graph
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    graph.initializer.extend(g.added)
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # stale where a layer was rewritten; onnxruntime infers again
    return model, rewritten
