"""Atomic writes: the old file or the new one, never half of one, and errors that name it."""

import errno

import pytest

from codec.fileio import atomic_write, atomic_write_bytes


def test_a_failed_write_names_the_target_and_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")

    def fails_half_way(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        atomic_write(target, fails_half_way)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left


def test_a_file_where_the_folder_should_be_is_not_a_directory_error(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(NotADirectoryError) as caught:
        atomic_write_bytes(tmp_path / "taken" / "out.bin", b"x")
    assert caught.value.filename == str(tmp_path / "taken" / "out.bin")


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(KeyError):
        atomic_write(tmp_path / "out.bin", lambda tmp: {}["missing"])
    assert not list(tmp_path.iterdir())
