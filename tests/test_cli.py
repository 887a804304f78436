import subprocess
import sys

from codec import __version__
from codec.cli import main


def test_version_and_help(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "usage: codec" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "codec.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "codec" in out.stdout
