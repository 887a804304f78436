"""tests/references.py: a missing reference package skips its tests, except under
CODEC_REQUIRE_REFERENCES=1 (CI), where it fails them."""

import pytest
from references import reference


def test_a_reference_that_imports_is_returned(monkeypatch):
    monkeypatch.setenv("CODEC_REQUIRE_REFERENCES", "1")
    assert reference("json").dumps([1]) == "[1]"


def test_a_missing_reference_skips_or_under_ci_fails(monkeypatch):
    monkeypatch.delenv("CODEC_REQUIRE_REFERENCES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_reference_package"):
        reference("no_such_reference_package")
    monkeypatch.setenv("CODEC_REQUIRE_REFERENCES", "1")
    with pytest.raises(pytest.fail.Exception, match="no_such_reference_package"):
        reference("no_such_reference_package")
