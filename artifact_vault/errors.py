"""Domain exceptions, and the one table that maps them to HTTP statuses.

    VaultError
    ├── ConfigError                 bad config file: reported at start-up, never served
    ├── BadRequest                  400  the request itself is malformed or unsafe
    ├── AuthFailed                  401  auth is on and no valid token came with the request
    ├── Forbidden                   403  a valid token whose scopes do not cover the path
    ├── NotFound                    404  no backend, or no such artifact
    │   └── UpstreamNotFound        404  the upstream said 404/410 (may be negatively cached)
    ├── MethodNotAllowed            405
    ├── RangeNotSatisfiable         416
    └── UpstreamError               502  the upstream could not give us a usable answer
        ├── UpstreamRateLimited     429  the upstream said 429 (Retry-After passed on)
        ├── UpstreamTimeout         504
        ├── OfflineMiss             504  offline mode and the artifact is not cached
        └── IntegrityError          502  size or digest did not match: nothing was kept
    TransferAborted                 (not an HTTP error) raised inside a body iterator so the
                                    server breaks the connection instead of ending it cleanly

Backends and the cache raise these; only ``app.py`` turns them into responses, through
``status_for``. Each carries the data a log line or an error body needs, so a handler never
has to parse a message.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base of every error Vault raises on purpose."""

    def __init__(self, message: str, *, upstream: str | None = None,
                 upstream_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        self.upstream_status = upstream_status
        self.code = code  # a protocol's own error code (OCI: MANIFEST_UNKNOWN, ...), if any


class ConfigError(VaultError):
    """The config file is wrong; ``message`` names the key and the fix."""


class BadRequest(VaultError):
    pass


class AuthFailed(VaultError):
    """No token, or a wrong one; the response carries a challenge so clients send one."""


class Forbidden(VaultError):
    pass


class NotFound(VaultError):
    pass


class UpstreamNotFound(NotFound):
    pass


class MethodNotAllowed(VaultError):
    def __init__(self, message: str, *, allowed: tuple[str, ...] = ("GET", "HEAD"),
                 code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.allowed = allowed


class RangeNotSatisfiable(VaultError):
    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class UpstreamError(VaultError):
    pass


class UpstreamRateLimited(UpstreamError):
    def __init__(self, message: str, *, retry_after: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    pass


class OfflineMiss(UpstreamError):
    pass


class IntegrityError(UpstreamError):
    pass


class TransferAborted(Exception):
    """Raised mid-body: the server must close the connection so the client sees a broken
    transfer, never a clean short file."""


# The one table from exception to status. Lookup walks the MRO, so a subclass without a row
# inherits its parent's status.
HTTP_STATUS: dict[type[VaultError], int] = {
    BadRequest: 400,
    AuthFailed: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    RangeNotSatisfiable: 416,
    UpstreamError: 502,
    UpstreamRateLimited: 429,
    UpstreamTimeout: 504,
    OfflineMiss: 504,
    VaultError: 500,
}


def status_for(exc: VaultError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
