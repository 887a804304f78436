"""ONNX export (codec.runtime.export) run by onnxruntime against the PyTorch model, for every
part type: causal SEANet with an LSTM, EnCodec 24 kHz imported (reflection padding, 2-layer
LSTM), EnCodec 48 kHz (segments, GroupNorm), DAC (factorized codes, odd rates), the STFT
encoder and iSTFT decoder. Codes equal (or differ at an fp32 near-tie), audio within 1e-4, any
length, and the one-frame step chained over a file equal to the whole-file graph."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from references import reference

reference("onnxruntime")  # what the exported graphs are checked in
reference("onnxscript")

from codec.models import Codec  # noqa: E402
from codec.models.config import CodecConfig  # noqa: E402
from codec.runtime.export import export_model  # noqa: E402
from codec.runtime.onnx import OnnxGraphs  # noqa: E402
from codec.runtime.onnx import attach as attach_onnx  # noqa: E402

NEAR_TIE = 1e-6  # relative difference of the fp64 distances of two codes


def _random_(model: Codec) -> Codec:
    """Biases, alphas and norms away from their init, so a mis-mapped one shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
            elif name.endswith("alpha"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def _stft_codec(causal: bool) -> Codec:
    torch.manual_seed(0)
    parts = dict(n_filters=16, hidden=32, n_blocks=1, hop_length=80, istft_hop=40, n_fft=160)
    config = {
        "sample_rate": 16000,
        "dimension": 16,
        "encoder": {"name": "stft", "causal": causal, **parts},
        "decoder": {"name": "istft", "causal": causal, **parts},
        "quantizer": {"name": "grvq", "groups": 2, "levels": 3, "codebook_size": 16},
    }
    model = Codec(CodecConfig.from_dict(config))
    with torch.no_grad():
        model.quantizer._codebook.embed.normal_(0.0, 0.3)
    return _random_(model)


def _first_differences(codes, reference):
    """(b, g, level, f) of each frame's first level where codes differ from reference."""
    differ = codes != reference  # (b, g, q, f)
    first = differ.float().argmax(2)  # first differing level, where any
    return [
        (b, g, int(first[b, g, f]), f)
        for b, g, f in zip(*np.nonzero(differ.any(2).numpy()), strict=True)
    ]


def _search_space(model: Codec, audio: torch.Tensor, reference, where):
    """(query, codes) in fp64 at the level where two code choices part: the residual of the
    levels before (following the reference codes) as that level searches it, and the codes
    it searches among (c, d)."""
    from codec.quantize.traced import NearestCodes

    b, g, level, f = where
    search = NearestCodes(model.quantizer, model.levels).double()
    with torch.no_grad():
        latents = model.encoder(audio.float()).transpose(1, 2)[b : b + 1, f : f + 1]
        x = search.project_in(latents.float()).double()
    residual = x.reshape(model.groups, -1)[g]
    books = search.codebooks.view(model.levels, model.groups, model.codebook_size, -1)
    for k in range(level + 1):
        if search.factorized:
            z = search.w_in[k, g].T @ residual + search.b_in[k, g, 0]
            query, book = z / z.norm(), search.searched[k, g].T
        else:
            query, book = residual, books[k, g]
            if search.cosine:
                query = query / query.norm()
        if k == level:
            return query, book
        code = books[k, g, int(reference[b, g, k, f])]
        if search.factorized:
            code = search.w_out[k, g].T @ code + search.b_out[k, g, 0]
        residual = residual - code
    raise AssertionError("unreachable")


def assert_codes_match(model, audio, codes, reference):
    """codes equal reference, or differ only from a level where the two codes' fp64
    distances to the residual differ by under NEAR_TIE relative."""
    codes, reference = torch.as_tensor(codes), torch.as_tensor(reference)
    assert codes.shape == reference.shape
    for where in _first_differences(codes, reference):
        b, g, level, f = where
        query, book = _search_space(model, audio, reference, where)
        ours, theirs = int(codes[b, g, level, f]), int(reference[b, g, level, f])
        d = [float((query - book[c]).square().sum()) for c in (ours, theirs)]
        gap = abs(d[0] - d[1]) / max(d)
        assert gap < NEAR_TIE, f"codes differ at {where} by {gap:.2e} relative distance"


MODELS = {}


def _model(kind: str, tiny_codec, encodec_reference, dac_reference, tmp_path_factory) -> Codec:
    if kind == "seanet":  # causal, zero padding, an LSTM
        return _random_(tiny_codec(causal=True, pad_mode="zeros"))
    if kind == "seanet_reflect":  # the shipped model's padding: causal, reflection
        return _random_(tiny_codec(causal=True, pad_mode="reflect", lstm=2))
    if kind == "stft":
        return _stft_codec(causal=True)
    if kind == "stft_centred":
        return _stft_codec(causal=False)
    folder = tmp_path_factory.mktemp(kind)
    if kind.startswith("encodec"):
        from codec.models.encodec import import_encodec

        rate = 24000 if kind == "encodec24" else 48000
        reference = encodec_reference.random_encodec(rate, small=True)
        path = encodec_reference.save_th(reference, folder / f"encodec_{rate // 1000}khz.th")
        return import_encodec(path).eval()
    from codec.models.dac import import_dac

    reference = dac_reference.random_dac(dac_reference.ODD)
    return import_dac(dac_reference.save_pth(reference, folder / "dac_16khz.pth")).eval()


@pytest.fixture(scope="module")
def exported(tiny_codec, encodec_reference, dac_reference, tmp_path_factory):
    """exported(kind) -> (model, OnnxGraphs), each kind exported once per module."""

    def get(kind: str):
        if kind not in MODELS:
            model = _model(kind, tiny_codec, encodec_reference, dac_reference, tmp_path_factory)
            folder = export_model(model, tmp_path_factory.mktemp(f"{kind}_onnx") / "graphs")
            MODELS[kind] = (model, OnnxGraphs.load(folder))
        return MODELS[kind]

    return get


FAST = ["seanet", "dac", "stft"]
SLOW = ["seanet_reflect", "encodec24", "encodec48", "stft_centred"]
KINDS = FAST + [pytest.param(kind, marks=pytest.mark.slow) for kind in SLOW]


@pytest.mark.parametrize("kind", KINDS)
def test_whole_file_graphs_equal_pytorch_at_any_length(kind, exported):
    """Lengths around the hop and its multiples, one sample and one frame included (a traced
    export that fixed padding amounts would fail or differ on some of them)."""
    model, graphs = exported(kind)
    hop = model.hop_length
    torch.manual_seed(0)
    lengths = [1, 2, hop - 1, hop, hop + 1, 3 * hop + 5, 4 * hop, 17 * hop - 3]
    for length in lengths:
        audio = torch.randn(2, model.channels, length) * 0.3
        with torch.no_grad():  # a segmented model's graphs code one segment
            reference = model._encode_frames(audio, model.levels)
            expected = model._decode_frames(reference)
        assert_codes_match(model, audio, graphs.encode(audio.numpy()), reference)
        decoded = graphs.decode(reference.numpy())
        assert decoded.shape == tuple(expected.shape), length
        np.testing.assert_allclose(decoded, expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_running_on_the_graphs_codes_as_it_does_on_its_layers(kind, exported):
    """attach(): Codec.encode and decode through the graphs (segmented models included: the
    segments are cut, scaled and overlap-added around the per-segment graphs)."""
    model, graphs = exported(kind)
    torch.manual_seed(1)
    audio = torch.randn(1, model.channels, 5 * model.hop_length + 3) * 0.3
    if model.segmentation is not None:
        audio = torch.randn(1, model.channels, model.segmentation.length * 2) * 0.3
    with torch.no_grad():
        reference = model.encode(audio, levels=2)
        expected = model.decode(reference)
    attach_onnx(model, graphs)
    try:
        codes = model.encode(audio, levels=2)
        decoded = model.decode(reference)
    finally:
        model.runtime = None
    assert_codes_match(model, audio, codes, reference)
    np.testing.assert_allclose(decoded.numpy(), expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "kind", ["seanet", "stft", pytest.param("seanet_reflect", marks=pytest.mark.slow)]
)
def test_the_step_graph_chained_over_a_file_equals_the_whole_file_graph(kind, exported):
    """Zero padding: the stream equals offline coding from the first frame. Reflection: the
    stream equals the layers' own stream, one frame a call (its first frames reflect
    themselves, so differ from offline)."""
    model, graphs = exported(kind)
    torch.manual_seed(2)
    audio = torch.randn(2, model.channels, 24 * model.hop_length) * 0.3
    stream = graphs.stream(batch_size=2)
    codes = stream.encode(audio.numpy()[..., : 10 * model.hop_length])
    codes = np.concatenate([codes, stream.encode(audio.numpy()[..., 10 * model.hop_length :])], -1)
    decoded = stream.decode(codes[..., :7])
    decoded = np.concatenate([decoded, stream.decode(codes[..., 7:])], -1)
    if model.encoder.pad_mode == "zeros":
        assert_codes_match(model, audio, codes, graphs.encode(audio.numpy()))
        np.testing.assert_allclose(decoded, graphs.decode(codes), atol=1e-4, rtol=0)
        return
    hop = model.hop_length
    with torch.no_grad(), model.streaming(batch_size=2):
        layers = torch.cat(
            [model.encode(audio[..., k : k + hop]) for k in range(0, 24 * hop, hop)], -1
        )
        layer_audio = torch.cat(
            [model.decode(torch.from_numpy(codes[..., k : k + 1])) for k in range(24)], -1
        )
    assert np.array_equal(codes, layers.numpy())
    np.testing.assert_allclose(decoded, layer_audio.numpy(), atol=1e-4, rtol=0)


def test_a_stream_restarts_items_and_checks_its_batch(exported):
    model, graphs = exported("seanet")
    audio = (torch.randn(2, 1, 6 * model.hop_length) * 0.3).numpy()
    stream = graphs.stream(batch_size=2)
    first = stream.encode(audio)
    stream.reset(np.array([False, True]))
    again = stream.encode(audio)
    assert np.array_equal(again[1], first[1]) and not np.array_equal(again[0], first[0])
    fewer = graphs.stream(batch_size=2).decode(first[:, :, :2])  # the rest count as dropped
    np.testing.assert_allclose(fewer, graphs.decode(first[:, :, :2]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="batch of 2"):
        stream.encode(audio[:1])
    with pytest.raises(ValueError, match="whole hops"):
        stream.encode(audio[..., :5])


@pytest.mark.slow
def test_a_reflect_padded_stream_ends_on_a_partial_chunk_as_the_layers_do(exported):
    """coding.py streams a reflection-padded file alone, its last chunk as long as what is
    left: on the graphs, the whole hops run as steps and the partial rest on the layers,
    from the steps' state."""
    from codec.coding import Windowing, encode_batch

    model, graphs = exported("seanet_reflect")
    torch.manual_seed(3)
    signal = torch.randn(1, model.hop_length * 20 + 17) * 0.3
    windowing = Windowing(chunk_frames=8, context_frames=0, quantum_frames=8)
    (reference,) = encode_batch(model, [signal], model.levels, windowing)
    attach_onnx(model, graphs)
    try:
        (codes,) = encode_batch(model, [signal], model.levels, windowing)
    finally:
        model.runtime = None
    assert torch.equal(codes, reference)


def test_the_step_profile_counts_every_weight_and_times_both_graphs(exported, tmp_path):
    """scripts/bench/profile_steps.py on a small causal model: the step graphs hold at least
    the bytes it says a frame reads (the encoder's and decoder's parameters and the codebooks),
    and onnxruntime's profile gives each step graph's operators a time."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "profile_steps.py"
    spec = importlib.util.spec_from_file_location("profile_steps", path)
    profile_steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_steps)
    model, graphs = exported("seanet")
    graphs = OnnxGraphs.load(graphs.directory)  # its own sessions: profiling replaces them
    read = profile_steps.frame_bytes(model)
    assert read > 4 * (model.quantizer.codebooks.numel() + model.decoder.dimension)
    assert profile_steps.weight_bytes(graphs.directory, ("encoder_step", "decoder_step")) >= read
    audio = np.random.default_rng(0).standard_normal((1, 1, 6 * model.hop_length))
    per_graph = profile_steps.profiled(
        graphs, graphs.directory, audio.astype(np.float32), model.hop_length, str(tmp_path / "p")
    )
    assert set(per_graph) == {"encoder_step", "decoder_step"}
    assert all(ops["Conv"] > 0 for ops in per_graph.values())
    frames = audio[..., : 2 * model.hop_length].astype(np.float32)
    timed = profile_steps.paired(graphs, graphs, frames, model.hop_length, rounds=2)
    assert all(np.isfinite(t) and t > 0 for t in timed)  # two times and their ratio
