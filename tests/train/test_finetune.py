"""init_from=DIR fine-tunes the saved model in DIR with its own architecture and sample rate,
whatever the model= group says."""

import soundfile as sf
import torch

from codec.models import Codec
from codec.train import main
from codec.train.checkpoint import list_checkpoints, load_checkpoint


def saved_8khz_model(tiny_codec, folder):
    """A tiny model whose architecture differs from the train overrides' model= settings in
    every way that matters: rate, groups, levels, codebook size, LSTM."""
    return tiny_codec(sample_rate=8000, codebook_size=32, model_id="imported").save_pretrained(
        folder
    )


def test_init_from_trains_the_saved_models_own_architecture(
    tmp_path, capsys, metrics_records, tiny_train_overrides, tiny_codec
):
    source_dir = saved_8khz_model(tiny_codec, tmp_path / "imported")
    source = Codec.from_pretrained(source_dir, inference=False)
    run = tmp_path / "run"
    steps = ["trainer.steps=2", "trainer.valid_every=2", "trainer.checkpoint_every=2"]
    main([*tiny_train_overrides, *steps, f"init_from={source_dir}", f"run_dir={run}"])

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
    start = next(r for r in metrics_records(run) if r.get("event") == "start")
    assert start["init_from"] == str(source_dir)
    assert f"init_from: the model is {source_dir} with its own architecture" in (
        capsys.readouterr().err
    )
    valid = next(r for r in metrics_records(run) if r.get("event") == "valid")
    assert f"valid_mel@{tuned.bitrate(4) / 1000:g}kbps" in valid


def test_an_imported_encodec_model_fine_tunes_with_its_codebooks_and_without_dead_code_revival(
    tmp_path,
    encodec_reference,
    tiny_train_overrides,
):
    """A randomised EnCodec checkpoint, imported, trains a few steps as itself: its codebooks
    continue from EnCodec's statistics (no k-means rerun: they move by EMA steps only) and
    init_changes switches dead-code revival off."""
    from codec.models.encodec import import_encodec

    reference = encodec_reference.random_encodec(24000, small=True, seed=7)
    folder = import_encodec(
        encodec_reference.save_th(reference, tmp_path / "encodec_24khz-t.th")
    ).save_pretrained(tmp_path / "imported")
    source = Codec.from_pretrained(folder, inference=False)
    run = tmp_path / "run"
    steps = ["trainer.steps=3", "trainer.valid_every=3", "trainer.checkpoint_every=3"]
    changes = "+init_changes.quantizer.threshold_ema_dead_code=0"
    main([*tiny_train_overrides, *steps, f"init_from={folder}", changes, f"run_dir={run}"])

    tuned = Codec.from_pretrained(run / "model", inference=False)
    assert tuned.config.quantizer_options.threshold_ema_dead_code == 0
    assert tuned.config.part("encoder") == source.config.part("encoder")
    before = source.quantizer._codebook.cluster_size
    weights = load_checkpoint(list_checkpoints(run)[-1])["model"]
    after = weights["quantizer._codebook.cluster_size"]
    # EnCodec's statistics continued: three EMA steps at decay 0.99 keep at least 0.99^3 of
    # every count (a k-means restart would have replaced them with this batch's counts)
    assert (after >= 0.99**3 * before - 1e-6).all() and not torch.equal(after, before)
    assert bool(weights["quantizer._codebook.initted"])


def test_init_changes_deepen_the_saved_model(tmp_path, tiny_train_overrides, tiny_codec):
    """+init_changes.decoder.n_residual_layers=2 trains the saved model with one more residual
    unit per decoder stage; its encoder and quantizer start from the saved weights."""
    source_dir = saved_8khz_model(tiny_codec, tmp_path / "saved")
    run = tmp_path / "run"
    steps = ["trainer.steps=2", "trainer.valid_every=2", "trainer.checkpoint_every=2"]
    deeper = "+init_changes.decoder.n_residual_layers=2"
    main([*tiny_train_overrides, *steps, f"init_from={source_dir}", deeper, f"run_dir={run}"])

    tuned = Codec.from_pretrained(run / "model", inference=False)
    assert tuned.config.part("decoder")[1].n_residual_layers == 2
    assert tuned.config.part("encoder")[1].n_residual_layers == 1
    source = Codec.from_pretrained(source_dir, inference=False).state_dict()
    first = load_checkpoint(list_checkpoints(run)[0])["model"]
    assert len(first) > len(source)
    # two Adam steps move a weight by about 2 x lr; a fresh initialisation would be far off
    for key in (
        "encoder.model.0.conv.parametrizations.weight.original1",
        "decoder.model.0.conv.bias",
    ):
        assert (first[key] - source[key]).abs().max() < 0.01
