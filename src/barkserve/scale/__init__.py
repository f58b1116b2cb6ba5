"""More than one machine: Ray Data for mass generation (`batch`) and Ray Serve for the HTTP API.

Ray is an optional extra (`pip install 'barkserve[ray]'`); nothing here imports it at module top,
so the rest of barkserve works without it.
"""

from barkserve.scale.cluster import connect, require_ray

__all__ = ["connect", "require_ray"]
