"""`codec train` from an installed package, away from the source tree: a wheel built here and an
editable install, each in a fresh virtual environment that borrows torch and the other
dependencies from the running one (nothing is downloaded)."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from codec.models import Codec

REPO = Path(__file__).resolve().parent.parent
TOP_LEVEL_SKIPPED = {".git", ".venv", "runs", "data", "build", "dist", ".pytest_cache"}


def skipped(folder: str, names: list[str]) -> set[str]:
    """What copying the source tree leaves out: work folders at its top, caches anywhere."""
    top = TOP_LEVEL_SKIPPED if Path(folder) == REPO else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


def _setuptools_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return tuple(int(part) for part in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return (0,)


def fresh_venv(folder: Path) -> Path:
    """A new venv's python (the venv module's --system-site-packages shows the base
    interpreter's packages, not those of the venv running these tests)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True
    )
    return folder / "bin" / "python"


def lend_packages(python: Path) -> None:
    """Let the venv import torch, hydra, ... from the environment running these tests, after its
    own packages: done once the codec is installed, so that pip saw no other codec."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    done = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    parents = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (Path(done.stdout.strip()) / "zz_lent_packages.pth").write_text("\n".join(parents) + "\n")


def run(cmd, cwd, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.mark.slow
@pytest.mark.skipif(
    _setuptools_version() < (77,), reason="building needs setuptools>=77 (pip install -e .[dev])"
)
@pytest.mark.parametrize("mode", ["wheel", "editable"])
def test_an_installed_package_trains_from_any_folder(tmp_path, fsdd_root, mode):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    shutil.copytree(REPO, source, symlinks=True, ignore=skipped)
    python = fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    if mode == "wheel":
        wheels = tmp_path / "wheels"
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        run([*build, "-q", "-w", str(wheels), str(source)], cwd=tmp_path)
        (wheel,) = wheels.glob("codec-*.whl")
        run([*pip, str(wheel)], cwd=tmp_path, env=env)
        shutil.rmtree(source)  # the installed package must not need the source tree
    else:  # the venv's own setuptools may be too old to build: lend it the one found here
        import setuptools

        tools = {"PYTHONPATH": str(Path(setuptools.__file__).parent.parent)}
        run([*pip, "-e", str(source)], cwd=tmp_path, env=env | tools)

    lend_packages(python)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = run([str(python), "-c", "import codec; print(codec.__file__)"], elsewhere, env)
    expected = tmp_path / ("venv" if mode == "wheel" else "source")
    assert Path(located.stdout.strip()).is_relative_to(expected)

    codec = str(tmp_path / "venv" / "bin" / "codec")
    assert "usage: codec train" in run([codec, "train", "--help"], elsewhere, env).stdout
    overrides = [
        "experiment=demo",
        "data=folder",
        f"data.root={fsdd_root}",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.steps=3",
        "trainer.valid_items=2",
        "trainer.threads=2",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "run_dir=run",
    ]
    run([codec, "train", *overrides], elsewhere, env)
    model = Codec.from_pretrained(elsewhere / "run" / "model")
    assert model.sample_rate == 16000 and (elsewhere / "run" / "step_00000003.ckpt").is_file()
