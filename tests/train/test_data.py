"""Manifests, the train/valid split, random segments on real speech, and the demo corpus."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from codec.train.data import (
    EpochBatches,
    SegmentDataset,
    build_manifest,
    split_manifest,
    split_seed,
)
from codec.train.synthetic import make_demo_clip, make_demo_corpus


@pytest.fixture
def speech_folder(tmp_path, fsdd_root):
    """12 real FSDD recordings (8 kHz) in two subfolders, plus two broken files."""
    folder = tmp_path / "speech"
    for i, src in enumerate(sorted(fsdd_root.glob("*.wav"))[:12]):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, sub / src.name)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("this is not audio")
    return folder


def test_manifest_reads_headers_and_names_the_files_it_left_out(speech_folder):
    records, problems = build_manifest([speech_folder])
    assert len(records) == 12
    assert all(r.sample_rate == 8000 and r.channels == 1 and r.frames > 0 for r in records)
    assert {r.key.split("/")[0] for r in records} == {"a", "b"}
    assert len(problems) == 2
    assert any("empty.wav" in p and "empty file" in p for p in problems)
    assert any("notes.wav" in p and "not a readable audio file" in p for p in problems)


def test_split_is_deterministic_and_stable(speech_folder, tmp_path):
    records, _ = build_manifest([speech_folder])
    train, valid, _ = split_manifest(records, 0.25, seed=3)
    assert len(valid) == 3 and len(train) == 9
    assert not {r.key for r in train} & {r.key for r in valid}
    # the same corpus elsewhere, found in another order, splits the same way
    moved = tmp_path / "moved"
    shutil.copytree(speech_folder, moved)
    again, _ = build_manifest([moved])
    _, valid_moved, _ = split_manifest(list(reversed(again)), 0.25, seed=3)
    assert [r.key for r in valid_moved] == [r.key for r in valid]
    # another seed gives another split
    assert [r.key for r in split_manifest(records, 0.25, seed=4)[1]] != [r.key for r in valid]
    with pytest.raises(ValueError, match="valid_fraction"):
        split_manifest(records, 1.0)


def test_the_test_split_is_apart_and_leaves_valid_as_it_was(speech_folder):
    records, _ = build_manifest([speech_folder])
    two = split_manifest(records, 0.25, seed=3)
    three = split_manifest(records, 0.25, seed=3, test_fraction=0.25)
    assert three.valid == two.valid and two.test == []
    assert len(three.test) == 3 and len(three.train) == 6
    keys = [{r.key for r in part} for part in three]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert set().union(*keys) == {r.key for r in records}
    assert len(split_manifest(records[:3], 0.01, test_fraction=0.01).test) == 1  # at least one
    with pytest.raises(ValueError, match="test_fraction"):
        split_manifest(records, 0.5, test_fraction=0.5)


def test_segments_are_resampled_deterministic_and_cover_real_speech(speech_folder):
    records, _ = build_manifest([speech_folder])
    data = SegmentDataset(records, 16000, 1, segment_seconds=0.25, seed=1)
    wav, skipped = data[0]
    assert wav.shape == (1, 4000) and wav.dtype == torch.float32 and skipped == 0
    assert torch.equal(data[0][0], wav)  # same seed, epoch and index: same segment
    data.set_epoch(1)
    assert not torch.equal(data[0][0], wav)
    # long files give more segments per epoch than short ones, and real speech is not silent
    assert len(data) >= len(records)
    energy = torch.stack([data[i][0].pow(2).mean() for i in range(len(data))])
    assert (energy > 1e-5).float().mean() > 0.8
    stereo = SegmentDataset(records, 16000, 2, segment_seconds=0.25)[3][0]
    assert stereo.shape == (2, 4000) and torch.equal(stereo[0], stereo[1])


def test_epoch_batches_split_the_epoch_between_ranks_and_resume_mid_epoch():
    def batches(epoch, skip=0, rank=0, world=1):
        sampler = EpochBatches(23, 3, rank, world, seed=5)
        sampler.set_epoch(epoch, skip)
        return list(sampler)

    whole = batches(2)
    assert len(whole) == 7 and all(e == 2 for batch in whole for e, _ in batch)
    assert batches(2, skip=4) == whole[4:]  # where a checkpoint after 4 batches resumes
    assert batches(2, skip=7) == [] and batches(3) != whole
    ranks = [batches(1, rank=r, world=2) for r in range(2)]
    drawn = [i for rank in ranks for batch in rank for _, i in batch]
    assert len(ranks[0]) == len(ranks[1]) == 3 and len(set(drawn)) == len(drawn)
    with pytest.raises(ValueError, match="fewer than data.batch_size=8"):
        EpochBatches(10, 8, 0, 2)


def test_loader_workers_draw_each_epochs_own_segments(speech_folder):
    """A persistent loader worker holds its own copy of the dataset, which set_epoch never
    reaches; the (epoch, index) pairs of EpochBatches carry the epoch to it."""
    records, _ = build_manifest([speech_folder])
    data = SegmentDataset(records[:4], 16000, 1, segment_seconds=0.1, seed=0)
    sampler = EpochBatches(len(data), 4)
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=sampler, num_workers=1, persistent_workers=True
    )
    for epoch in range(2):
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        (wav, _), pairs = next(iter(loader)), next(iter(sampler))
        alone = torch.stack([data[index][0] for _, index in pairs])
        assert torch.equal(wav, alone), epoch  # the worker drew what this process draws


def test_short_files_are_padded_or_skipped(speech_folder):
    records, _ = build_manifest([speech_folder])
    longest = max(r.seconds for r in records)
    padded = SegmentDataset(records, 8000, 1, segment_seconds=longest + 1.0)
    wav, _ = padded[0]
    assert wav.shape[-1] == round((longest + 1.0) * 8000)
    assert wav[0, -8000:].abs().max() == 0  # zero-padded at the end
    shortest = min(r.seconds for r in records)
    middle = (shortest + longest) / 2
    kept = SegmentDataset(records, 8000, 1, segment_seconds=middle, short="skip")
    assert 0 < len(kept.records) < len(records)
    assert all(r.seconds >= middle for r in kept.records)
    with pytest.raises(ValueError, match="no training file"):
        SegmentDataset(records, 8000, 1, segment_seconds=longest + 1.0, short="skip")


def test_a_file_that_breaks_after_the_manifest_is_skipped_and_counted(speech_folder, capsys):
    records, _ = build_manifest([speech_folder])
    broken = records[0]
    data = SegmentDataset(records, 8000, 1, segment_seconds=0.1, seed=0)
    # overwrite the file with NaN samples: its header still reads, its samples do not pass
    sf.write(broken.path, np.full(broken.frames, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    index = 0  # the first items belong to the first record
    wav, skipped = data[index]
    assert skipped == 1 and torch.isfinite(wav).all()
    assert broken.path in capsys.readouterr().err
    # remembered: the next segment of that file comes from another file, without reading the
    # broken one, warning or counting it again
    wav, skipped = data[index + 1]
    assert skipped == 0 and torch.isfinite(wav).all()
    assert broken.path not in capsys.readouterr().err


def test_demo_corpus_is_deterministic_varied_and_whole(tmp_path):
    first = make_demo_corpus(tmp_path / "one", count=6, seconds=0.5, sample_rate=16000, seed=2)
    second = make_demo_corpus(tmp_path / "two", count=6, seconds=0.5, sample_rate=16000, seed=2)
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in second.iterdir()) and len(files) == 6
    assert {f.split("_", 1)[1] for f in files} == {
        "speech_like.wav",
        "notes.wav",
        "noise_texture.wav",
    }
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert not list(tmp_path.glob(".*building"))
    clips = [make_demo_clip(i, 0.5, 16000, seed=2) for i in range(3)]
    for clip in clips:
        assert 0.3 <= np.abs(clip).max() <= 0.9 and np.isfinite(clip).all()
    # three different kinds of sound: their spectra differ
    spectra = [np.abs(np.fft.rfft(c)) for c in clips]
    centroids = [float((s * np.arange(len(s))).sum() / s.sum()) for s in spectra]
    assert len({round(c, -1) for c in centroids}) == 3


def test_adding_a_folder_keeps_the_held_out_files_of_the_others(speech_folder, tmp_path):
    """Each folder is split on its own: a second corpus leaves the first one's held-out
    files (and so the figures measured on them) as they were."""
    records, _ = build_manifest([speech_folder])
    _, valid, _ = split_manifest(records, 0.25, seed=3)
    other = tmp_path / "other"
    shutil.copytree(speech_folder / "a", other / "x")  # the same keys' names under another root
    both, _ = build_manifest([speech_folder, other])
    assert len(both) > len(records)
    _, valid_both, _ = split_manifest(both, 0.25, seed=3)
    assert [r.path for r in valid_both if r.root == 0] == [r.path for r in valid]
    assert [r for r in valid_both if r.root == 1]  # the new folder holds out its own share
    # the floor of one held-out record applies to the corpus, not to each folder
    assert len(split_manifest(both[:1] + both[-1:], 0.1)[1]) == 1


def test_the_split_seed_is_its_own_setting_and_older_configs_keep_the_training_seed():
    assert split_seed(OmegaConf.create({"seed": 3, "data": {"split_seed": 0}})) == 0
    assert split_seed(OmegaConf.create({"seed": 3, "data": {"valid_fraction": 0.05}})) == 3
