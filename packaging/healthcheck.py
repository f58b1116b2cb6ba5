#!/usr/bin/env python3
"""The image's health check: exit 0 when GET /health on this container answers 200, else 1.

OCI images have no HEALTHCHECK; compose files and people run this (`barkserve-healthcheck` in the image),
Kubernetes probes GET /health directly. The port is BARKSERVE_PORT (8000).
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('BARKSERVE_PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=5) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
