"""init_from=DIR fine-tunes the saved model in DIR with its own architecture and sample rate,
whatever the model= group says."""

import soundfile as sf
import torch
from test_train import TINY, records

from codec.models import Codec, CodecConfig
from codec.train import main
from codec.train.checkpoint import list_checkpoints, load_checkpoint


def saved_8khz_model(folder):
    """A tiny model whose architecture differs from TINY's model= settings in every way that
    matters: rate, groups, levels, codebook size, LSTM."""
    torch.manual_seed(0)
    config = CodecConfig.from_dict(
        dict(
            sample_rate=8000,
            n_filters=4,
            dimension=16,
            ratios=[4, 4, 4],
            lstm=1,
            groups=2,
            levels=4,
            codebook_size=32,
            model_id="imported",
            quantizer={"decay": 0.9, "quantize_dropout": True},
        )
    )
    return Codec(config).save_pretrained(folder)


def test_init_from_trains_the_saved_models_own_architecture(tmp_path, capsys):
    source_dir = saved_8khz_model(tmp_path / "imported")
    source = Codec.from_pretrained(source_dir, inference=False)
    run = tmp_path / "run"
    steps = ["trainer.steps=2", "trainer.valid_every=2", "trainer.checkpoint_every=2"]
    main([*TINY, *steps, f"init_from={source_dir}", f"run_dir={run}"])

    tuned = Codec.from_pretrained(run / "model")
    shape = (tuned.sample_rate, tuned.groups, tuned.levels, tuned.codebook_size)
    assert shape == (8000, 2, 4, 32)  # TINY asks for 3 levels of 16 codes: not used
    assert tuned.config.part("encoder")[1].lstm == 1
    weights = load_checkpoint(list_checkpoints(run)[-1])["model"]
    assert weights.keys() == source.state_dict().keys()
    moved = [k for k, v in source.state_dict().items() if not torch.equal(v, weights[k])]
    assert any("embed" in k for k in moved)  # trained in train mode: the codebooks moved too

    corpus = sorted((run / "corpus").glob("*.wav"))
    assert corpus and {sf.info(str(p)).samplerate for p in corpus} == {8000}
    start = next(r for r in records(run) if r.get("event") == "start")
    assert start["init_from"] == str(source_dir)
    assert f"init_from: the model is {source_dir} with its own architecture" in (
        capsys.readouterr().err
    )
    valid = next(r for r in records(run) if r.get("event") == "valid")
    assert f"valid_mel@{tuned.bitrate(4) / 1000:g}kbps" in valid
