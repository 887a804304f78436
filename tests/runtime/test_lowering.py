"""codec.runtime.lowering: one-window Conv, ConvTranspose and LSTM nodes rewritten as MatMuls
compute what the nodes did (onnxruntime runs both), and nodes with more than one window, or
with groups or padding inside, are left as they were."""

import numpy as np
import pytest
from references import reference

reference("onnxruntime")
onnx = reference("onnx")

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from codec.runtime.lowering import lower_step_graph  # noqa: E402

BATCH = 3


def _model(nodes, inputs: dict, outputs: dict, initializers: dict):
    """A graph of `nodes`: inputs {name: shape, batch first as 'b' or a number}, outputs
    {name: rank}, initializers {name: array} (floats as float32)."""
    graph = helper.make_graph(
        nodes,
        "step",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [
            helper.make_tensor_value_info(k, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])
            for k, rank in outputs.items()
        ],
        [
            numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
            for k, v in initializers.items()
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model, feeds: dict) -> list:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(None, feeds)


def _check(model, feeds: dict, rewritten: dict) -> None:
    expected = _run(model, feeds)
    lowered, counts = lower_step_graph(model)
    onnx.checker.check_model(lowered)
    assert dict(counts) == rewritten
    for op in rewritten:
        assert op not in {node.op_type for node in lowered.graph.node}
        assert op in {node.op_type for node in model.graph.node}  # a copy was rewritten
    for got, want in zip(_run(lowered, feeds), expected, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("length", "kernel", "stride", "dilation", "bias"),
    [(7, 7, 1, 1, True), (16, 16, 8, 1, True), (20, 16, 8, 1, False), (8, 3, 2, 3, True)],
)
def test_a_conv_with_one_output_frame_becomes_a_matmul(length, kernel, stride, dilation, bias):
    rng = np.random.default_rng(0)
    weights = {"w": rng.standard_normal((5, 4, kernel)), "b": rng.standard_normal(5)}
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"] if bias else ["x", "w"],
        ["y"],
        strides=[stride],
        dilations=[dilation],
        pads=[0, 0],
        kernel_shape=[kernel],
    )
    x = rng.standard_normal((BATCH, 4, length)).astype(np.float32)
    _check(_model([node], {"x": ["b", 4, length]}, {"y": 3}, weights), {"x": x}, {"Conv": 1})


@pytest.mark.parametrize("bias", [True, False])
def test_a_depthwise_conv_with_one_output_frame_becomes_a_product_and_a_sum(bias):
    rng = np.random.default_rng(4)
    weights = {"w": rng.standard_normal((6, 1, 7)), "b": rng.standard_normal(6)}
    node = helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], group=6)
    x = rng.standard_normal((BATCH, 6, 7)).astype(np.float32)
    _check(_model([node], {"x": ["b", 6, 7]}, {"y": 3}, weights), {"x": x}, {"Conv": 1})


def test_padding_after_the_one_window_is_not_read():
    """A frame-rate embedding conv (kernel 2, stride 2, padded by one at the end) on two
    frames."""
    rng = np.random.default_rng(5)
    weights = {"w": rng.standard_normal((5, 4, 2)), "b": rng.standard_normal(5)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2], pads=[0, 1])
    x = rng.standard_normal((BATCH, 4, 2)).astype(np.float32)
    _check(_model([node], {"x": ["b", 4, 2]}, {"y": 3}, weights), {"x": x}, {"Conv": 1})


@pytest.mark.parametrize("bias", [True, False])
def test_a_conv_transpose_fed_one_frame_becomes_a_matmul(bias):
    rng = np.random.default_rng(1)
    weights = {"w": rng.standard_normal((6, 4, 10)), "b": rng.standard_normal(4)}
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"] if bias else ["x", "w"], ["y"], strides=[5]
    )
    x = rng.standard_normal((BATCH, 6, 1)).astype(np.float32)
    _check(_model([node], {"x": ["b", 6, 1]}, {"y": 3}, weights), {"x": x}, {"ConvTranspose": 1})


def test_an_lstm_step_becomes_a_matmul_and_its_gates_with_folded_weights():
    """The weights reach the LSTM through Unsqueeze, as the exporter leaves them; every
    output (sequence, last h, last c) is kept."""
    rng = np.random.default_rng(2)
    hidden, size = 6, 5
    weights = {
        "w": rng.standard_normal((4 * hidden, size)) * 0.5,
        "r": rng.standard_normal((4 * hidden, hidden)) * 0.5,
        "b": rng.standard_normal((1, 8 * hidden)) * 0.5,
        "axes": np.array([0]),
    }
    model = _model(
        [
            helper.make_node("Unsqueeze", ["w", "axes"], ["w3"]),
            helper.make_node("Unsqueeze", ["r", "axes"], ["r3"]),
            helper.make_node(
                "LSTM",
                ["x", "w3", "r3", "b", "", "h", "c"],
                ["y", "y_h", "y_c"],
                hidden_size=hidden,
            ),
        ],
        {"x": [1, "b", size], "h": [1, "b", hidden], "c": [1, "b", hidden]},
        {"y": 4, "y_h": 3, "y_c": 3},
        weights,
    )
    feeds = {
        "x": rng.standard_normal((1, BATCH, size)).astype(np.float32),
        "h": rng.standard_normal((1, BATCH, hidden)).astype(np.float32),
        "c": rng.standard_normal((1, BATCH, hidden)).astype(np.float32),
    }
    _check(model, feeds, {"LSTM": 1})
    lowered, _ = lower_step_graph(model)
    names = {t.name for t in lowered.graph.initializer}
    assert not {"w", "r"} & names  # the unfolded weights are gone with their Unsqueezes


@pytest.mark.parametrize(
    ("op", "shape", "attributes"),
    [
        ("Conv", [BATCH, 4, 9], {"kernel_shape": [3]}),  # 7 windows
        ("Conv", [BATCH, 4, 3], {"kernel_shape": [3], "group": 2}),  # grouped, not depthwise
        ("Conv", [BATCH, 4, 1], {"kernel_shape": [3], "pads": [1, 1]}),
        ("ConvTranspose", [BATCH, 4, 2], {"strides": [2]}),  # two frames
    ],
)
def test_layers_with_more_than_one_window_or_groups_or_padding_stay(op, shape, attributes):
    rng = np.random.default_rng(3)
    groups = attributes.get("group", 1)
    w = rng.standard_normal((4, 4 // groups, 3) if op == "Conv" else (4, 2, 3))
    model = _model(
        [helper.make_node(op, ["x", "w"], ["y"], **attributes)], {"x": shape}, {"y": 3}, {"w": w}
    )
    lowered, counts = lower_step_graph(model)
    assert not counts
    assert [node.op_type for node in lowered.graph.node] == [op]


def test_an_exported_step_graph_has_no_one_window_layer_left(tmp_path, tiny_codec):
    """The causal SEANet's encoder ends in a conv on one frame and both sides step an LSTM;
    `lower=False` keeps them (revision 1, as the cache will not reuse)."""
    reference("onnxscript")
    import json

    from codec.runtime.export import REVISION, export_model

    model = tiny_codec(causal=True, pad_mode="zeros").eval()
    folders = {lower: export_model(model, tmp_path / str(lower), lower=lower) for lower in (1, 0)}
    ops = {
        (lower, name): {n.op_type for n in onnx.load(str(folder / f"{name}.onnx")).graph.node}
        for lower, folder in folders.items()
        for name in ("encoder", "encoder_step", "decoder_step")
    }
    assert "LSTM" in ops[1, "encoder"]  # the whole-file graph keeps its sequence LSTM
    assert "LSTM" not in ops[1, "encoder_step"] | ops[1, "decoder_step"]
    assert "LSTM" in ops[0, "encoder_step"] and "LSTM" in ops[0, "decoder_step"]
    revisions = {
        lower: json.loads((folder / "manifest.json").read_text())["revision"]
        for lower, folder in folders.items()
    }
    assert revisions == {1: REVISION, 0: 1}
