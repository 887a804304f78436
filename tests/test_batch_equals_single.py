"""Items of different lengths coded in one batch give each item's single-item codes and audio:
non-causal models (windows of one size stacked), causal zero-padded models (streams side by
side, zero-padded past their ends) and causal reflection-padded ones (each its own stream)."""

import pytest
import torch

from codec.coding import Windowing, decode_codes, encode_batch

LENGTHS = (64 * 7 + 3, 64 * 30, 64 * 12 + 50)


@pytest.mark.parametrize(
    "settings", [{}, {"causal": True, "pad_mode": "zeros"}, {"causal": True, "pad_mode": "reflect"}]
)
def test_a_batch_codes_each_item_as_it_codes_alone(settings, tiny_codec):
    model = tiny_codec(**settings).eval()
    with torch.no_grad():
        model.quantizer._codebook.embed.normal_(0.0, 0.3)
    torch.manual_seed(0)
    signals = [torch.randn(1, n) * 0.3 for n in LENGTHS]
    windowing = Windowing(chunk_frames=16, context_frames=4, quantum_frames=8)
    together = encode_batch(model, signals, 4, windowing)
    for signal, codes in zip(signals, together):
        (alone,) = encode_batch(model, [signal], 4, windowing)
        assert torch.equal(codes, alone)
        length = signal.shape[-1]
        audio = decode_codes(model, codes, length, windowing)
        assert torch.equal(audio, decode_codes(model, alone, length, windowing))
        assert audio.shape == (1, length)


def test_a_causal_model_decodes_a_padded_batch_as_each_item_alone(tiny_codec):
    """Codes of different lengths stacked, padded with -1 (silence) past each item's end: a
    causal decoder never looks ahead, so each item's audio is its own."""
    model = tiny_codec(causal=True, pad_mode="zeros").eval()
    torch.manual_seed(0)
    codes = [model.encode(torch.randn(1, 1, n) * 0.3) for n in LENGTHS]
    frames = max(c.shape[-1] for c in codes)
    batch = torch.cat(
        [torch.nn.functional.pad(c, (0, frames - c.shape[-1]), value=-1) for c in codes]
    )
    decoded = model.decode(batch)
    for i, item in enumerate(codes):
        alone = model.decode(item)
        torch.testing.assert_close(
            decoded[i : i + 1, :, : alone.shape[-1]], alone, atol=1e-6, rtol=0
        )
