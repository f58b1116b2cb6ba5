"""The full image test (test_image.py) builds the cpu image from scratch (2.5 minutes with warm caches,
about 10 cold on 2 cores): it is collected only when asked for, by `make image-test` (BARKSERVE_IMAGE_TEST=1)
or with BARKSERVE_TEST_IMAGE naming an image already built. The suite always runs test_image_config.py,
the quick form of it."""

from __future__ import annotations

import os

collect_ignore = (
    [] if os.environ.get("BARKSERVE_IMAGE_TEST") or os.environ.get("BARKSERVE_TEST_IMAGE") else ["test_image.py"]
)
