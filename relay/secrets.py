"""Keeping secrets out of what we print: DSNs are shown with ``****`` for the password.

Every output and log line that names a database goes through :func:`mask_dsn`; the settings hold
passwords as ``SecretStr`` (their repr is ``**********``), so printing a ``Settings`` is safe too.
"""

from __future__ import annotations

import re

MASK = "****"

# postgresql://user:password@host/...  (the password may contain anything but '@' and '/')
_URI_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<pw>[^@/]*)(?P<tail>@)", re.IGNORECASE)
# password=secret / password='sec ret' in a key=value conninfo, or ?password=... in a URI query
_KV_PASSWORD = re.compile(r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password replaced by ``****`` (URI userinfo, ``password=`` pairs, query)."""
    masked = _URI_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", dsn)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", masked)
