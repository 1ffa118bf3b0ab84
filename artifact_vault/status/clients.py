"""Copy-paste client setup for each backend, written for the URL clients reach Vault at.

That is the configured ``public_url``, else the URL the browser used: the request's ``Host``
header and scheme, only ever displayed here, never used for a cache key or an upstream
request. A Host header that is not a plain host[:port] is replaced by the server's own name,
so nothing odd is echoed into a snippet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import BackendSpec

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


@dataclass(frozen=True)
class Origin:
    scheme: str  # http or https
    host: str  # host[:port], as the client addresses Vault
    path: str = ""  # a public_url's path, without the trailing slash

    @classmethod
    def public(cls, url: str) -> Origin:
        """The origin of a (validated) ``public_url``."""
        parts = urlsplit(url)
        return cls(parts.scheme, parts.netloc, parts.path.rstrip("/"))

    @classmethod
    def of(cls, environ: dict[str, Any]) -> Origin:
        scheme = "https" if environ.get("wsgi.url_scheme") == "https" else "http"
        host = environ.get("HTTP_HOST", "")
        if not _HOST.match(host):
            host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
            host = host if _HOST.match(host) else "localhost"
        return cls(scheme, host)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def hostname(self) -> str:
        return self.host.rsplit(":", 1)[0] if not self.host.endswith("]") else self.host


@dataclass(frozen=True)
class Snippet:
    title: str  # what it is and where it goes
    text: str


def snippets(spec: BackendSpec, origin: Origin) -> list[Snippet]:
    """Client setup for one configured backend."""
    if spec.type == "pypi":
        return _pypi(spec, origin)
    if spec.type in ("registry-v2", "dockerhub"):
        return _registry(spec, origin)
    return _http(spec, origin)


def _http(spec: BackendSpec, origin: Origin) -> list[Snippet]:
    base = f"{origin.url}{spec.prefix}"
    out = [Snippet("curl", f"curl -O {base}<path>\ncurl -r 0-99 {base}<path>   # ranges too")]
    upstream = urlsplit(spec.settings.base_url).path.lower()
    if "debian" in upstream or "ubuntu" in upstream:  # an apt archive
        suite = "bookworm-security" if "security" in upstream else "bookworm"
        out.append(Snippet("apt: /etc/apt/sources.list",
                           f"deb {base.rstrip('/')} {suite} main"))
    return out


def _pypi(spec: BackendSpec, origin: Origin) -> list[Snippet]:
    index = f"{origin.url}{spec.prefix}simple/"
    trusted = f"\ntrusted-host = {origin.hostname}" if origin.scheme == "http" else ""
    return [
        Snippet("pip: ~/.config/pip/pip.conf", f"[global]\nindex-url = {index}{trusted}"),
        Snippet("pip, per command or environment",
                f"pip install --index-url {index} requests\nexport PIP_INDEX_URL={index}"),
        Snippet("uv", f"export UV_INDEX_URL={index}\nuv pip install -r requirements.txt"),
        Snippet("uv: pyproject.toml", f'[[tool.uv.index]]\nurl = "{index}"\ndefault = true'),
    ]


def _registry(spec: BackendSpec, origin: Origin) -> list[Snippet]:
    settings = spec.settings
    name = spec.prefix.strip("/")
    upstream = urlsplit(settings.base_url).netloc
    registry = (settings.registry_hosts or (upstream,))[0]  # what clients call it: docker.io
    insecure = origin.scheme == "http"
    out = []
    if settings.default:
        daemon: dict[str, Any] = {"registry-mirrors": [origin.url]}
        if insecure:
            daemon["insecure-registries"] = [origin.host]
        out.append(Snippet("docker: /etc/docker/daemon.json", json.dumps(daemon, indent=2)))
    out.append(Snippet("docker pull", f"docker pull {origin.host}/{name}/<name>:<tag>"))
    out.append(Snippet(
        f"containerd: /etc/containerd/certs.d/{registry}/hosts.toml",
        f'server = "{settings.base_url}"\n\n[host."{origin.url}/v2/{name}"]\n'
        '  capabilities = ["pull", "resolve"]\n  override_path = true'))
    out.append(Snippet(
        "podman: /etc/containers/registries.conf.d/vault.conf",
        f'[[registry]]\nprefix = "{registry}"\nlocation = "{upstream}"\n\n'
        f'[[registry.mirror]]\nlocation = "{origin.host}/{name}"'
        + ("\ninsecure = true" if insecure else "")))
    return out
