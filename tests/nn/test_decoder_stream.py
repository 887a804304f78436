"""The lean streaming decode (SEANetDecoderStream, CodeTable) against the layers' general
streaming path and the quantizer's checked lookup, and what each of them leaves to those."""

import itertools

import pytest
import torch
from torch import nn

from codec.nn import SEANetDecoder, fold_weight_norm, for_cpu_inference, streaming
from codec.nn.decoder_stream import SEANetDecoderStream
from codec.quantize import GroupedResidualVQ, ResidualVQ
from codec.quantize.code_table import CodeTable

CHUNKS = [3, 1, 5, 2, 1, 4]  # frames per call, cycled


def _random_(module: nn.Module) -> nn.Module:
    """Biases and weights away from their init, so a missing bias or a mis-laid tap shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.add_(torch.randn_like(param) * (0.1 if "bias" in name else 0.05))
    return module


def _decoder(**overrides) -> SEANetDecoder:
    torch.manual_seed(0)
    kw = dict(dimension=12, n_filters=4, ratios=[4, 3, 2], lstm=2, causal=True)
    return _random_(fold_weight_norm(SEANetDecoder(**(kw | overrides)))).eval()


def _chunked(fn, latents, sizes):
    out, start, k = [], 0, 0
    while start < latents.shape[-1]:
        n = sizes[k % len(sizes)]
        out.append(fn(latents[..., start : start + n]))
        start, k = start + n, k + 1
    return torch.cat(out, -1)


@pytest.mark.parametrize(
    "pad_mode, true_skip, residual_layers, sizes",
    list(itertools.product(["reflect", "zeros"], [False, True], [1, 2], [[1], CHUNKS])),
)
def test_stream_equals_the_layers_streaming(pad_mode, true_skip, residual_layers, sizes):
    """Same chunks, same audio: two residual layers give a dilated (2) conv, true_skip an
    identity shortcut, a first chunk of one frame reflects itself as the layers' path does."""
    decoder = _decoder(pad_mode=pad_mode, true_skip=true_skip, n_residual_layers=residual_layers)
    latents = torch.randn(2, 12, 23)
    with torch.no_grad(), streaming(decoder, 2):
        general = _chunked(decoder, latents, sizes)
    stream = SEANetDecoderStream.of(decoder)
    assert stream is not None
    with torch.no_grad():
        lean = _chunked(lambda z: stream(z.transpose(1, 2)), latents, sizes)
    assert lean.shape == general.shape == (2, 1, 23 * 24)
    torch.testing.assert_close(lean, general, atol=1e-5, rtol=1e-5)


def test_stream_of_a_converted_decoder_equals_the_plain_one():
    decoder = _decoder()
    latents = torch.randn(1, 12, 9)
    with torch.no_grad():
        plain = SEANetDecoderStream.of(decoder)(latents.transpose(1, 2))
        converted = for_cpu_inference(_decoder().requires_grad_(False))
        fast = SEANetDecoderStream.of(converted)(latents.transpose(1, 2))
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [dict(causal=False), dict(activation="snake")],
)
def test_stream_leaves_other_decoders_to_the_layers(overrides):
    assert SEANetDecoderStream.of(_decoder(**overrides)) is None
    assert SEANetDecoderStream.of(nn.Sequential()) is None


def _quantizer(kind, **kw):
    torch.manual_seed(0)
    if kind == "residual":
        q = ResidualVQ(dim=8, num_quantizers=4, codebook_size=16, **kw)
    else:
        q = GroupedResidualVQ(dim=12, groups=3, num_quantizers=4, codebook_size=16, **kw)
    with torch.no_grad():
        q._codebook.embed.normal_()
    return q.eval()


@pytest.mark.parametrize(
    "kind, kw",
    [("grouped", {}), ("grouped", dict(codebook_dim=5)), ("residual", {})],
)
@pytest.mark.parametrize("levels", [1, 3, 4])
def test_code_table_equals_the_checked_lookup(kind, kw, levels):
    quantizer = _quantizer(kind, **kw)
    groups = 3 if kind == "grouped" else 1
    codes = torch.randint(0, 16, (2, groups, levels, 7))
    indices = codes.permute(1, 0, 3, 2)  # (g, b, f, q)
    want = quantizer.get_output_from_indices(indices[0] if kind == "residual" else indices)
    got = CodeTable.of(quantizer)(codes)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_code_table_leaves_dropped_and_out_of_range_codes_to_the_checked_lookup():
    table = CodeTable.of(_quantizer("grouped"))
    codes = torch.randint(0, 16, (1, 3, 2, 4))
    for bad in (-1, 16):
        broken = codes.clone()
        broken[0, 1, 1, 2] = bad
        assert table(broken) is None
    assert table(torch.zeros(1, 3, 5, 1, dtype=torch.long)) is None  # more levels than it has
    assert CodeTable.of(_quantizer("grouped", factorized=True, codebook_dim=4)) is None
