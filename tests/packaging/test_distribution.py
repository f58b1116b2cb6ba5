"""The distributions `python -m build` makes: what they carry, and a wheel that works installed elsewhere.

The build runs without isolation (the test environment's setuptools satisfies build-system.requires;
`build` checks that), so it needs no network. The fresh venv gets the wheel with --no-deps and reaches
the already-installed dependencies (torch is 700 MB) through a .pth line naming this environment's
site-packages; that directory's own .pth files are not processed, so the checkout's editable install is
not on the path and the commands below can only run the installed wheel. Every Requires-Dist of the
wheel is checked against that environment first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # builds and runs processes
HANG_GUARD_SEC = 900  # stops a hung build or command; not a speed assertion


def tracked(prefix: str) -> set[str]:
    done = subprocess.run(["git", "ls-files", prefix], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # From a copy of the checkout's files (tracked, and new ones git does not ignore): a stale
    # src/barkserve.egg-info from an earlier in-place build would otherwise decide what is packaged.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_SEC)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("barkserve-*.whl")
    (sdist,) = out.glob("barkserve-*.tar.gz")
    return wheel, sdist


def package_files() -> set[str]:
    """Every file of the package in the repository: modules and data (web page, eval data, schemas)."""
    return {path.removeprefix("src/") for path in tracked("src/barkserve")}


def test_the_wheel_carries_the_whole_package_and_nothing_else(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    content = {n for n in names if ".dist-info/" not in n}
    assert content == package_files()
    # The files a user reaches without the source tree: the web page, eval's test set and report schema.
    web = ("barkserve/server/web/index.html", "barkserve/server/web/app.js")
    evaluation = ("barkserve/evaluation/data/default.jsonl", "barkserve/evaluation/data/report.schema.json")
    assert set(web + evaluation) <= names


def test_the_sdist_carries_the_package_and_no_tests_or_results(dists: tuple[Path, Path]) -> None:
    _, sdist = dists
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {n.removeprefix(top + "/") for n in archive.getnames() if archive.getmember(n).isfile()}
    assert {"src/" + f for f in package_files()} <= names
    assert {"README.md", "pyproject.toml", "PKG-INFO"} <= names
    stray = {n for n in names if n.startswith(("tests/", "benchmarks/", "docs/", "deploy/", ".ci/", "scripts/"))}
    assert stray == set()


def test_the_installed_wheel_runs_version_make_tiny_and_say(dists: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = dists
    venv = tmp_path / "venv"
    # Nothing of the checkout on the path: PYTHONPATH=src would show pip and Python the source tree.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=HANG_GUARD_SEC, env=clean)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, env=clean).stdout.strip()  # fmt: skip
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check"]
    done = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=HANG_GUARD_SEC, env=clean)
    assert done.returncode == 0, done.stderr
    # Only now the dependencies: before, pip would have seen this environment's barkserve as installed.
    (Path(purelib) / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The wheel's own requirements (core, no extras) are met, so --no-deps hid nothing.
    check = (
        "import importlib.metadata as md; from packaging.requirements import Requirement\n"
        "reqs = [Requirement(r) for r in md.requires('barkserve')]\n"
        "bad = [str(r) for r in reqs if (r.marker is None or r.marker.evaluate({'extra': ''}))"
        " and not r.specifier.contains(md.version(r.name), prereleases=True)]\n"
        "import barkserve; print(barkserve.__file__); print(bad)"
    )
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert done.returncode == 0, done.stderr
    where, bad = done.stdout.splitlines()
    assert Path(where).is_relative_to(venv) and bad == "[]", done.stdout

    barkserve = str(venv / "bin" / "barkserve")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([barkserve, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=HANG_GUARD_SEC)  # fmt: skip

    version = run("--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout
    tiny = run("make-tiny", str(tmp_path / "tiny"))
    assert tiny.returncode == 0, tiny.stderr
    said = run("say", "Hello from the wheel.", "-o", str(tmp_path / "hello.wav"), "--model", str(tmp_path / "tiny"),
               "--offline", "--device", "cpu", "--max-duration", "0.2", "--seed", "1")  # fmt: skip
    assert said.returncode == 0, said.stderr
    audio = (tmp_path / "hello.wav").read_bytes()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 1000
