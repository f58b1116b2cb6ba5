"""The cpu image: built from scratch with packaging/build-image.sh, inspected with skopeo, unpacked with umoci
and its entry point run in the unpacked root filesystem (chroot as the image's user), on the tiny checkpoint
bind-mounted in.

It needs root (mmdebstrap, chroot, mount), the Debian packages mmdebstrap, umoci and skopeo
(.ci/system-deps.sh), a Debian mirror and PyPI. The build takes minutes (docs/deploy.md has the figures);
`make image-test` runs this module alone. BARKSERVE_TEST_IMAGE=DIR reuses an OCI layout already built
by `make image` (tag from BARKSERVE_TEST_IMAGE_TAG, default the version's -cpu tag) instead of building.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from serverproc import free_port, wait_for
from support import missing

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
HANG_GUARD_SEC = 1800  # stops a hung build or process; not a speed assertion
MAX_IMAGE_BYTES = 1_500_000_000  # the cpu image's budget (issue 31), unpacked
DEBIAN_PYTHON = "/usr/bin/python3"  # the image's Python release (bookworm), for the wheels


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


BUILT_FROM: dict[str, str] = {}  # the commit the module's build started from


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(OCI layout, tag) of the cpu image: built now, or the one BARKSERVE_TEST_IMAGE names."""
    if os.environ.get("BARKSERVE_TEST_IMAGE"):
        return Path(os.environ["BARKSERVE_TEST_IMAGE"]), os.environ.get("BARKSERVE_TEST_IMAGE_TAG", f"{VERSION}-cpu")
    BUILT_FROM["revision"] = head()
    if os.geteuid() != 0:
        missing("building the image needs root (mmdebstrap, chroot)")
    for tool in ("mmdebstrap", "umoci", "skopeo", DEBIAN_PYTHON):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed: run `bash .ci/system-deps.sh`")
    out = tmp_path_factory.mktemp("oci") / "layout"
    cmd = ["bash", str(ROOT / "packaging" / "build-image.sh"), "--variant", "cpu", "--out", str(out), "--tag", "test"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHON": DEBIAN_PYTHON},
                          timeout=HANG_GUARD_SEC)  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    print("\n".join(line for line in done.stderr.splitlines() if line.startswith("[build-image")))  # step times
    return out, "test"


def skopeo_inspect(layout: tuple[Path, str], *flags: str) -> dict[str, Any]:
    done = subprocess.run(["skopeo", "inspect", *flags, f"oci:{layout[0]}:{layout[1]}"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return dict(json.loads(done.stdout))


def test_skopeo_shows_the_labels_and_the_config(layout: tuple[Path, str]) -> None:
    labels = skopeo_inspect(layout)["Labels"]
    revision = labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.version"] == VERSION
    if "revision" in BUILT_FROM:
        assert revision == BUILT_FROM["revision"]
    else:  # built earlier: a commit of this repository
        assert subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT).returncode == 0
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.source"]
    assert labels["io.barkserve.healthcheck.path"] == "/health"
    assert json.loads(labels["io.barkserve.healthcheck.cmd"]) == ["/usr/local/bin/barkserve-healthcheck"]
    config = skopeo_inspect(layout, "--config")["config"]
    assert config["User"] == "10001:0"
    assert config["Entrypoint"] == ["/opt/barkserve/bin/barkserve"] and config["Cmd"] == ["serve", "--host", "0.0.0.0"]
    assert {"BARKSERVE_AUTH=on", "BARKSERVE_REFUSE_ROOT=1", "HF_HOME=/data/hf-cache"} <= set(config["Env"])
    assert set(config["Volumes"]) == {"/data/hf-cache", "/data/voices", "/data/output", "/data/jobs"}


@pytest.fixture(scope="module")
def bundle(layout: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image unpacked by umoci (rootfs/ and the runtime config.json), /proc and /dev mounted in it."""
    where = tmp_path_factory.mktemp("bundle") / "b"
    subprocess.run(["umoci", "unpack", "--image", f"{layout[0]}:{layout[1]}", str(where)], check=True,
                   capture_output=True, timeout=HANG_GUARD_SEC)  # fmt: skip
    rootfs = where / "rootfs"
    mounts = [(["-t", "proc", "proc"], rootfs / "proc"), (["--bind", "/dev"], rootfs / "dev")]
    done = []
    try:
        for args, target in mounts:
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", *args, str(target)], check=True)
            done.append(target)
        yield where
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "--lazy", str(target)], check=False)


def test_the_unpacked_image_fits_the_budget(bundle: Path) -> None:
    du = subprocess.run(["du", "-sb", "--exclude=./proc", "--exclude=./dev", "."], cwd=bundle / "rootfs",
                        capture_output=True, text=True, check=True)  # fmt: skip
    size = int(du.stdout.split()[0])
    print(f"unpacked cpu image: {size / 1e6:.0f} MB")
    assert size < MAX_IMAGE_BYTES


class Image:
    """Runs commands in the unpacked root filesystem the way a runtime would from config.json."""

    def __init__(self, bundle: Path) -> None:
        spec = json.loads((bundle / "config.json").read_text())
        self.rootfs = bundle / "rootfs"
        self.args: list[str] = spec["process"]["args"]  # entry point + command
        self.env = dict(item.split("=", 1) for item in spec["process"]["env"])
        self.user = f"{spec['process']['user']['uid']}:{spec['process']['user']['gid']}"

    def command(self, args: list[str], user: str | None = None) -> list[str]:
        return ["chroot", f"--userspec={user or self.user}", str(self.rootfs), *args]

    def run(self, args: list[str], user: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(args, user), capture_output=True, text=True, env={**self.env, **env},
                              timeout=HANG_GUARD_SEC)  # fmt: skip


@pytest.fixture()
def image(bundle: Path, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Image]:
    """The image with the tiny checkpoint bind-mounted read-only at /models/tiny."""
    # A copy that others may read, as a mounted model folder must be for the image's user (pytest's own
    # folders are private to root).
    model = shutil.copytree(tiny_model_dir, tmp_path / "tiny")
    for path in [model, *model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    target = bundle / "rootfs" / "models" / "tiny"
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", "-o", "ro", str(model), str(target)], check=True)
    try:
        yield Image(bundle)
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=False)


def test_the_entry_point_serves_with_keys_as_the_image_user(image: Image) -> None:
    entry = image.args[:1]  # the `barkserve` of the entry point, for the documented first-key command
    settings = {"BARKSERVE_MODEL": "/models/tiny", "BARKSERVE_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                "BARKSERVE_MAX_DURATION_SEC": "0.3"}  # fmt: skip
    as_root = image.run(image.args, user="0:0", **settings)
    assert as_root.returncode != 0 and "refuses to run as root" in as_root.stderr
    keyless = image.run(image.args, **settings)
    assert keyless.returncode != 0 and "no active API key" in keyless.stderr
    created = image.run([*entry, "keys", "create", "--name", "admin", "--scopes", "admin"])
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()

    port = free_port()
    env = {**image.env, **settings, "BARKSERVE_PORT": str(port)}
    log = image.rootfs.parent / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(image.command(image.args), stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(f"{base}/health", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, "the image's server to answer /health")
        status = Path(f"/proc/{proc.pid}/status").read_text()  # chroot exec()s the entry point: same pid
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
        assert uids == ["10001"] * 4 and gids == ["0"] * 4
        text = {"text": "Hello from the image.", "seed": 1}
        assert requests.post(f"{base}/synthesize", json=text, timeout=HANG_GUARD_SEC).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        made = requests.post(f"{base}/synthesize", json=text, headers=auth, timeout=HANG_GUARD_SEC)
        assert made.status_code == 200, made.text
        audio = requests.get(base + made.json()["url"], headers=auth, timeout=HANG_GUARD_SEC)
        assert audio.content[:4] == b"RIFF" and len(audio.content) > 1000
        probe = image.run(["/usr/local/bin/barkserve-healthcheck"], BARKSERVE_PORT=str(port))
        assert probe.returncode == 0, probe.stderr
        assert "api_keys=required" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    down = image.run(["/usr/local/bin/barkserve-healthcheck"], BARKSERVE_PORT=str(port))
    assert down.returncode == 1


def test_an_arbitrary_uid_in_group_0_can_use_the_data_folders(image: Image) -> None:
    """OpenShift runs images as a random UID with group 0: the image's folders are group-writable."""
    made = image.run([*image.args[:1], "keys", "create", "--name", "openshift"], user="43210:0",
                     BARKSERVE_JOBS_DIR="/data/jobs/openshift")  # fmt: skip
    assert made.returncode == 0, made.stderr
    for folder in ("hf-cache", "voices", "output"):
        touched = image.run(["/usr/bin/touch", f"/data/{folder}/written-by-43210"], user="43210:0")
        assert touched.returncode == 0, touched.stderr
