"""API keys, tenancy records and per-key limits: the library side of running barkserve in public.

The HTTP edge (`barkserve.server.access`) uses these; nothing here knows about Flask.
"""

from barkserve.auth.keys import SCOPES, ApiKey, KeyStore
from barkserve.auth.limiter import UsageLimiter

__all__ = ["SCOPES", "ApiKey", "KeyStore", "UsageLimiter"]
