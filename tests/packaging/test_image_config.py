"""The quick form of the image test: build-image.sh's last step (the OCI image, its config and labels) on a
small stand-in root filesystem, read back with skopeo and umoci. The full build and run is test_image.py
(`make image-test`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import missing

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_image_config_labels_and_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("build-image.sh needs root")
    for tool in ("mmdebstrap", "umoci", "skopeo"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed: run `bash .ci/system-deps.sh`")
    rootfs = tmp_path / "stand-in"
    for folder in ("opt/barkserve/bin", "usr/local/bin", "data/jobs"):
        (rootfs / folder).mkdir(parents=True)
    (rootfs / "opt/barkserve/bin/barkserve").write_text("#!/bin/sh\n")
    out = tmp_path / "layout"
    cmd = ["bash", str(ROOT / "packaging/build-image.sh"), "--rootfs", str(rootfs), "--out", str(out), "--tag", "t"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "IMAGE_SOURCE": "https://x.test/b"})
    assert done.returncode == 0, done.stderr[-3000:]

    inspect = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{out}:t"], capture_output=True, text=True,
                                        check=True).stdout)  # fmt: skip
    labels = inspect["Labels"]
    assert labels["org.opencontainers.image.source"] == "https://x.test/b"
    assert labels["org.opencontainers.image.licenses"] == "MIT" and labels["org.opencontainers.image.version"]
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["io.barkserve.healthcheck.path"] == "/health"
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{out}:t", str(bundle)], check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["user"]["uid"] == 10001 and spec["process"]["user"]["gid"] == 0
    assert spec["process"]["args"] == ["/opt/barkserve/bin/barkserve", "serve", "--host", "0.0.0.0"]
    env = dict(item.split("=", 1) for item in spec["process"]["env"])
    assert env["BARKSERVE_AUTH"] == "on" and env["BARKSERVE_REFUSE_ROOT"] == "1"
    assert (bundle / "rootfs/opt/barkserve/bin/barkserve").read_text() == "#!/bin/sh\n"
