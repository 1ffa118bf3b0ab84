"""The catalog's documents (JSON) and pages (HTML): listings per backend and one item's detail.

Both views are built from the same dictionaries, so the HTML shows exactly what the API says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from packaging.version import InvalidVersion, Version

from ..backends.base import CatalogShape
from ..errors import NotFound
from . import html as h
from .catalog import SORTS, Catalog, Member, Query
from .clients import Origin
from .images import Images

API = "/-/api/catalog"
PAGE = "/-/catalog"
_TAGS_LISTED = 20


@dataclass(frozen=True)
class Source:
    """A backend as the catalog sees it."""

    name: str
    type: str
    prefix: str
    shape: CatalogShape


class Browser:
    def __init__(self, catalog: Catalog, images: Images, sources: Sequence[Source]) -> None:
        self._catalog = catalog
        self._images = images
        self.sources = {s.name: s for s in sources}

    def source(self, name: str) -> Source:
        if name not in self.sources:
            raise NotFound(f"no backend named {name!r} has a catalog; there are: "
                           f"{', '.join(self.sources) or 'none'}")
        return self.sources[name]

    # -- documents ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {"backends": [{"name": s.name, "type": s.type, "kind": s.shape.kind,
                              "prefix": s.prefix, "items": self._catalog.count(s.shape),
                              "href": f"{API}?" + urlencode({"backend": s.name})}
                             for s in self.sources.values()]}

    def listing(self, params: Mapping[str, str]) -> dict[str, Any]:
        source = self.source(params.get("backend", ""))
        query = Query.parse(params, source.name)
        page = self._catalog.page(source.shape, query)
        items = []
        for item in page.items:
            doc = {"name": item.name, "entries": item.entries, "size": item.size,
                   "hits": item.hits, "last_access": item.last_access,
                   "href": f"{API}/item?" + urlencode({"backend": source.name,
                                                              "name": item.name})}
            if source.shape.kind != "path":
                doc.update(self._facts(source, item.name, self._catalog.members(
                    source.shape, item.name), brief=True))
            items.append(doc)
        return {"backend": source.name, "kind": page.kind, "q": query.q, "sort": query.sort,
                "page": query.page, "per_page": query.per_page, "total": page.total,
                "pages": page.pages, "items": items}

    def item(self, params: Mapping[str, str]) -> dict[str, Any]:
        source = self.source(params.get("backend", ""))
        name = params.get("name", "")
        members = self._catalog.members(source.shape, name) if name else []
        if not members:
            raise NotFound(f"{name!r} is not cached in {source.name}")
        doc = {"backend": source.name, "kind": source.shape.kind, "name": name}
        doc.update(self._facts(source, name, members, brief=False))
        return doc

    def _facts(self, source: Source, name: str, members: list[Member],
               brief: bool) -> dict[str, Any]:
        kind = source.shape.kind
        if kind == "image":
            repo = self._images.repository(members)
            tags = [{"tag": t.ref, "digest": t.digest, "platforms": t.platforms, "size": t.size,
                     "hits": t.hits, "last_access": t.last_access} for t in repo.tags]
            return {"tags": [t["tag"] for t in tags][:_TAGS_LISTED] if brief else tags,
                    "tag_count": len(tags), "digests": repo.digests,
                    "platforms": repo.platforms, "image_size": repo.size,
                    "partial": repo.partial}
        if kind == "project":
            versions: dict[str, list[dict[str, Any]]] = {}
            for m in members:
                versions.setdefault(m.facts.get("version", ""), []).append(
                    {"file": m.facts.get("file", ""), "size": m.size, "hits": m.hits,
                     "last_access": m.last_access})
            ordered = sorted(versions, key=_version_key, reverse=True)
            if brief:
                return {"versions": ordered}
            return {"versions": [{"version": v, "files": versions[v]} for v in ordered]}
        m = members[0]
        return {"url": f"{source.prefix}{name}", "size": m.size, "hits": m.hits,
                "content_type": m.headers.get("content-type", ""), "fetched_at": m.fetched_at,
                "fresh_until": m.fresh_until, "last_access": m.last_access}

    # -- pages --------------------------------------------------------------------------------

    def listing_page(self, params: Mapping[str, str]) -> bytes:
        if not params.get("backend") and self.sources:
            params = {**params, "backend": next(iter(self.sources))}
        if not self.sources:
            return h.page("Catalog", "<h1>Catalog</h1><p>No backend has a catalog.</p>")
        doc = self.listing(params)
        name = doc["backend"]
        tabs = "".join(h.link(PAGE, {"backend": s}, s, **({"aria_current": "page"}
                                                           if s == name else {}))
                       for s in self.sources)
        keep = {"backend": name, "per_page": params.get("per_page", "")}
        sorts = "".join(f'<option value="{s}"{" selected" if s == doc["sort"] else ""}>'
                        f'by {s.replace("_", " ")}</option>' for s in SORTS)
        hidden = "".join(f'<input type="hidden" name="{k}" value="{h.esc(str(v))}">'
                         for k, v in keep.items() if v)
        form = (f'<form class="search" method="get" action="{PAGE}">{hidden}'
                f'<input type="search" id="q" name="q" value="{h.esc(doc["q"])}" '
                f'placeholder="Search names" aria-label="Search names">'
                f'<select id="sort" name="sort" aria-label="Sort by">{sorts}</select>'
                '<button type="submit" id="go">Search</button></form>')
        rows = [self._row(doc["kind"], name, item) for item in doc["items"]]
        heads = {"image": ["Repository", "Tags", "~Platforms", "#Image size", "#Hits",
                           "~Last access"],
                 "project": ["Project", "Versions", "#Size", "#Hits", "~Last access"],
                 "path": ["Path", "#Size", "#Hits", "~Last access"]}[doc["kind"]]
        here = {**keep, "q": doc["q"], "sort": doc["sort"] if doc["sort"] != "name" else ""}
        pager = [f'<span id="position">page {doc["page"]} of {doc["pages"]}, '
                 f'{doc["total"]} {"item" if doc["total"] == 1 else "items"}</span>']
        if doc["page"] > 1:
            pager.insert(0, h.link(PAGE, {**here, "page": doc["page"] - 1}, "Previous",
                                   id="prev", rel="prev"))
        if doc["page"] < doc["pages"]:
            pager.append(h.link(PAGE, {**here, "page": doc["page"] + 1}, "Next", id="next",
                                rel="next"))
        body = (f'<h1>Catalog</h1><nav class="tabs" aria-label="Backends">{tabs}</nav>{form}'
                + (h.table(heads, rows, "items") if rows else
                   '<p id="empty" class="muted">Nothing cached matches.</p>')
                + f'<nav class="pager">{"".join(pager)}</nav>')
        return h.page(f"Catalog: {name}", body)

    @staticmethod
    def _row(kind: str, backend: str, item: dict[str, Any]) -> list[str]:
        name = h.link(f"{PAGE}/item", {"backend": backend, "name": item["name"]}, item["name"],
                      **{"class": "item"})
        when = h.ago(item["last_access"])
        if kind == "image":
            more = item["tag_count"] - len(item["tags"])
            tags = "".join(f'<span class="tag">{h.esc(t)}</span>' for t in item["tags"])
            tags += f' <span class="muted">+{more}</span>' if more > 0 else ""
            return [name, tags, h.esc(", ".join(item["platforms"])),
                    h.size(item["image_size"]) + ("+" if item["partial"] else ""),
                    str(item["hits"]), when]
        if kind == "project":
            versions = "".join(f'<span class="tag">{h.esc(v)}</span>' for v in item["versions"])
            return [name, versions, h.size(item["size"]), str(item["hits"]), when]
        return [name, h.size(item["size"]), str(item["hits"]), when]

    def item_page(self, params: Mapping[str, str], origin: Origin) -> bytes:
        doc = self.item(params)
        source = self.sources[doc["backend"]]
        back = h.link(PAGE, {"backend": source.name}, f"← {source.name}")
        title = f"{doc['name']} in {source.name}"
        parts = [f"<p>{back}</p><h1>{h.esc(doc['name'])}</h1>"]
        if doc["kind"] == "image":
            parts.append(f'<p class="muted">{doc["tag_count"]} tagged or untagged images, '
                         f'{doc["digests"]} manifests cached by digest; '
                         f'{h.size(doc["image_size"])} of distinct layers; platforms: '
                         f'{h.esc(", ".join(doc["platforms"]) or "unknown")}</p>')
            parts.append(h.table(
                ["Tag", "~Digest", "Platforms", "#Size", "#Hits", "~Last access"],
                [[h.esc(t["tag"]), f"<code>{h.esc(t['digest'][:19])}…</code>",
                  h.esc(", ".join(t["platforms"])), h.size(t["size"]), str(t["hits"]),
                  h.ago(t["last_access"])] for t in doc["tags"]], "tags"))
            first = next((t["tag"] for t in doc["tags"] if not t["tag"].startswith("sha256:")),
                         "latest")
            parts.append(h.snippet("pull", f"docker pull {origin.host}/{source.name}/"
                                           f"{doc['name']}:{first}"))
        elif doc["kind"] == "project":
            for version in doc["versions"]:
                parts.append(f"<h2>{h.esc(version['version'] or '(no version)')}</h2>")
                parts.append(h.table(["File", "#Size", "#Hits", "~Last access"], [
                    [h.esc(f["file"]), h.size(f["size"]), str(f["hits"]),
                     h.ago(f["last_access"])] for f in version["files"]]))
            parts.append(h.snippet("pip", f"pip install --index-url {origin.url}"
                                          f"{source.prefix}simple/ {doc['name']}"))
        else:
            parts.append(h.table(["Fact", "Value"], [
                ["size", h.size(doc["size"])], ["content type", h.esc(doc["content_type"])],
                ["hits", str(doc["hits"])], ["fetched", h.ago(doc["fetched_at"])],
                ["fresh until", "forever (immutable)" if doc["fresh_until"] is None else
                 h.stamp(doc["fresh_until"])],
                ["last access", h.ago(doc["last_access"])]]))
            parts.append(h.snippet("curl", f"curl -O {origin.url}{doc['url']}"))
        return h.page(title, "".join(parts))


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)
