"""Atomic writes: the old file or the new one, never half of one, and errors that name it."""

import errno

import pytest

from codec.fileio import atomic_write, atomic_write_bytes, read_file_list


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


def test_a_file_list_is_its_non_blank_lines_and_an_unreadable_one_is_named(tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text(" a.wav\n\n  \nsub dir/b.flac \n")
    assert read_file_list(listing) == ["a.wav", "sub dir/b.flac"]
    for bad in (tmp_path / "missing.txt", tmp_path):
        with pytest.raises(ValueError, match=rf"^{bad}: cannot read the file list \("):
            read_file_list(bad)
    binary = tmp_path / "codes.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="codes.bin: cannot read the file list"):
        read_file_list(binary)
