"""One-line error messages."""

from codec.errors import first_line


def test_first_line_keeps_only_the_first_line():
    assert first_line(RuntimeError("size mismatch\n\tcopying a param\n")) == "size mismatch"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("")) == "RuntimeError"
