"""The reference packages the parity tests compare against (encodec, transformers,
descript-audio-codec, vector-quantize-pytorch, pystoi, and onnxruntime, which runs the exported
graphs; `make test` installs them).

Where one is missing a test that needs it is skipped, so a partial install still tests the
rest; but CI sets CODEC_REQUIRE_REFERENCES=1 (.ci/run), and there a reference that does not
import fails the test, so a broken install cannot pass as skips."""

from __future__ import annotations

import importlib
import os

import pytest


def required() -> bool:
    return os.environ.get("CODEC_REQUIRE_REFERENCES") == "1"


def missing(reason: str):
    """Skip the test, or under CODEC_REQUIRE_REFERENCES=1 fail it, for `reason`."""
    if required():
        pytest.fail(f"{reason} (CODEC_REQUIRE_REFERENCES=1)", pytrace=False)
    pytest.skip(reason)


def reference(module: str):
    """`import module`; a module that does not import skips the test (at module level, the
    file's tests), or under CODEC_REQUIRE_REFERENCES=1 fails it with the import's error."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing(f"reference package {module} does not import ({err})")
