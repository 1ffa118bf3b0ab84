"""A small PEP 503/691 index for tests: real wheels and an sdist, served by a FakeUpstream."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field

from .fake_upstream import FakeUpstream


@dataclass
class Dist:
    project: str
    version: str
    filename: str
    body: bytes
    metadata: bytes
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; "" yanked without a reason
    upstream_metadata: bool = True  # does the upstream serve <file>.metadata?

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _metadata(name: str, version: str, requires: list[str], requires_python: str | None) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n\n").encode()


def wheel(name: str, version: str, requires: list[str] = (), requires_python: str | None = None,
          **kw: object) -> Dist:
    """A real, installable pure-Python wheel with one module."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = _metadata(name, version, list(requires), requires_python)
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{dist_info}/METADATA": metadata,
             f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    return Dist(name, version, f"{module}-{version}-py3-none-any.whl", buf.getvalue(), metadata,
                requires_python=requires_python, **kw)  # type: ignore[arg-type]


def sdist(name: str, version: str) -> Dist:
    metadata = _metadata(name, version, [], None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size, info.mtime = len(metadata), 1704067200
        tf.addfile(info, io.BytesIO(metadata))
    return Dist(name, version, f"{name}-{version}.tar.gz", buf.getvalue(), metadata,
                upstream_metadata=False)


@dataclass
class Index:
    """Projects on one fake upstream, served as HTML or JSON pages (``fmt``)."""

    upstream: FakeUpstream
    fmt: str = "json"
    dists: list[Dist] = field(default_factory=list)

    def add(self, *dists: Dist) -> None:
        self.dists.extend(dists)
        self.publish()

    def publish(self) -> None:
        by_project: dict[str, list[Dist]] = {}
        for d in self.dists:
            by_project.setdefault(d.project, []).append(d)
            self.upstream.add(f"/packages/{d.filename}", d.body,
                              headers={"Content-Type": "application/octet-stream"})
            if d.upstream_metadata:
                self.upstream.add(f"/packages/{d.filename}.metadata", d.metadata)
        for project, dists in by_project.items():
            page = self._json(project, dists) if self.fmt == "json" else self._html(project, dists)
            ctype = ("application/vnd.pypi.simple.v1+json" if self.fmt == "json"
                     else "text/html; charset=utf-8")
            self.upstream.add(f"/simple/{project}/", page, headers={"Content-Type": ctype},
                              etag=f'"{hashlib.md5(page).hexdigest()}"', gzip=True)
        root = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(by_project))
        self.upstream.add("/simple/", f"<html><body>\n{root}</body></html>\n".encode(),
                          headers={"Content-Type": "text/html"}, gzip=True)

    def _json(self, project: str, dists: list[Dist]) -> bytes:
        files = []
        for d in dists:
            item: dict[str, object] = {"filename": d.filename, "url": f"/packages/{d.filename}",
                                       "hashes": {"sha256": d.sha256}, "size": len(d.body),
                                       "upload-time": "2024-01-01T00:00:00.000000Z"}
            if d.requires_python:
                item["requires-python"] = d.requires_python
            if d.yanked is not None:
                item["yanked"] = d.yanked or True
            if d.upstream_metadata:
                item["core-metadata"] = {"sha256": hashlib.sha256(d.metadata).hexdigest()}
            files.append(item)
        return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files,
                           "versions": sorted({d.version for d in dists})}).encode()

    def _html(self, project: str, dists: list[Dist]) -> bytes:
        links = []
        for d in dists:
            attrs = f'href="../../packages/{d.filename}#sha256={d.sha256}"'
            if d.requires_python:
                attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
            if d.yanked is not None:
                attrs += f' data-yanked="{html.escape(d.yanked)}"'
            if d.upstream_metadata:
                attrs += f' data-core-metadata="sha256={hashlib.sha256(d.metadata).hexdigest()}"'
            links.append(f"<a {attrs}>{d.filename}</a><br/>")
        return ("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>").encode()
