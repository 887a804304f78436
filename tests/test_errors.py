"""One-line error messages."""

from codec.errors import first_line


def test_first_line_keeps_only_the_first_line():
    assert first_line(RuntimeError("size mismatch\n\tcopying a param\n")) == "size mismatch"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("")) == "RuntimeError"


def test_first_line_strips_and_cuts_to_a_limit():
    assert first_line(RuntimeError("\n  unexpected EOF  \nat byte 9")) == "unexpected EOF"
    assert first_line("connection refused by the server", 10) == "connection"


def test_about_names_the_file_once():
    from codec.codes_file import CodesFormatError
    from codec.errors import about

    named = CodesFormatError.in_file("a/x.codes", "checksum mismatch")
    assert about("a/x.codes", named) == "a/x.codes: checksum mismatch"
    assert about("a/x.codes", CodesFormatError("made by m1, not by m2 (-m)")) == (
        "a/x.codes: made by m1, not by m2 (-m)"
    )
    missing = FileNotFoundError("made by model m1")
    assert about("a/x.codes", missing) == "a/x.codes: made by model m1"


def test_one_checkpoint_error_for_training_and_imports():
    from codec.errors import CheckpointError
    from codec.models import checkpoints
    from codec.train import checkpoint

    assert checkpoints.CheckpointError is checkpoint.CheckpointError is CheckpointError
