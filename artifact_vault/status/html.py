"""The HTML frame of the status and catalog pages, and the formatting they share.

Pages are built from strings with every value passed through ``esc``: artifact names come from
upstreams and are treated as hostile. The pages load nothing from anywhere (no fonts, images
or scripts from outside), and a Content-Security-Policy allows only the inline stylesheet and
the one inline script below, so markup that slipped through escaping still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from ..progress import human_bytes

esc = html.escape

_CSS = """
:root{--fg:#1d232b;--muted:#5c6773;--line:#d9dee4;--bg:#fff;--soft:#f3f5f8;--accent:#1f5fbf;
--ok:#1a7f37;--bad:#b42318}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#14213d;color:#fff;padding:.8rem 1rem}
header a{color:#fff;text-decoration:none;margin-right:1rem}
header strong{margin-right:1.5rem}
main{max-width:72rem;margin:0 auto;padding:1rem;overflow-wrap:anywhere}
h1{font-size:1.4rem;margin:.2rem 0 .8rem}h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
h3{font-size:1rem;margin:0 0 .4rem}
a{color:var(--accent)}
.muted{color:var(--muted)}.ok{color:var(--ok)}.bad{color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.8rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.8rem;background:var(--soft);
min-width:0}
.big{font-size:1.3rem;font-weight:600}
.bar{height:.5rem;background:var(--line);border-radius:4px;overflow:hidden;margin:.3rem 0}
.bar span{display:block;height:100%;background:var(--accent)}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
td.name{word-break:break-all}th,td:not(.name){overflow-wrap:normal}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#0f1720;color:#e6edf3;padding:.6rem;border-radius:6px;overflow-x:auto;margin:.3rem 0}
.snippet{margin:.6rem 0}
.snippet .head{display:flex;justify-content:space-between;align-items:flex-end;gap:.5rem}
.snippet button{font-size:12px;padding:.15rem .5rem;flex:none}
section.backend{margin:.8rem 0}details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}
form.search{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
form.search input[type=search]{flex:1 1 12rem;min-width:0;padding:.4rem}
select,button,input{font:inherit;padding:.35rem .6rem}
nav.tabs a{display:inline-block;padding:.3rem .7rem;margin:0 .3rem .3rem 0;border:1px solid
var(--line);border-radius:6px;text-decoration:none}
nav.tabs a[aria-current]{background:var(--accent);color:#fff;border-color:var(--accent)}
nav.pager{display:flex;gap:1rem;align-items:center;margin:.8rem 0;flex-wrap:wrap}
.tag{display:inline-block;background:var(--soft);border:1px solid var(--line);border-radius:4px;
padding:0 .3rem;margin:0 .2rem .2rem 0;font-size:13px;word-break:break-all}
@media (max-width:40rem){main{padding:.6rem}th.opt,td.opt{display:none}
header a{margin-right:.6rem}}
"""

# Copy buttons for the client snippets. navigator.clipboard exists only in secure contexts
# (https, localhost); elsewhere the snippet's text is selected for Ctrl-C.
_SCRIPT = """
document.addEventListener('click', function (e) {
  var b = e.target.closest('button.copy'); if (!b) return;
  var pre = b.closest('.snippet').querySelector('pre');
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(pre.textContent).then(function () { b.textContent = 'Copied'; });
  } else {
    var r = document.createRange(); r.selectNodeContents(pre);
    var s = window.getSelection(); s.removeAllRanges(); s.addRange(r); b.textContent = 'Selected';
  }
});
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'; "
       "img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def page(title: str, body: str) -> bytes:
    """A whole document around ``body`` (already escaped HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body><header><strong>Artifact Vault</strong><a href="/">Status</a>
<a href="/-/catalog">Catalog</a></header>
<main>{body}</main><script>{_SCRIPT}</script></body></html>
""".encode()


def snippet(title: str, text: str) -> str:
    return (f'<div class="snippet"><div class="head"><span class="muted">{esc(title)}</span>'
            f'<button type="button" class="copy">Copy</button></div><pre>{esc(text)}</pre></div>')


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], table_id: str = "") -> str:
    """A table of already-escaped cells; a header starting with '#' is numeric, with '~'
    optional (hidden on narrow screens)."""
    def cls(h: str) -> str:
        return ' class="num"' if h.startswith("#") else ' class="opt"' if h.startswith("~") else ""
    heads = list(headers)
    head = "".join(f"<th{cls(h)}>{esc(h.lstrip('#~'))}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td{cls(h) or (' class=name' if i == 0 else '')}>{c}</td>"
                                    for i, (h, c) in enumerate(zip(heads, row))) + "</tr>"
                   for row in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f'<div class="table"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}' \
           "</tbody></table></div>"


def link(path: str, params: dict[str, object], text: str, **attrs: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<a href="{esc(path + ("?" + query if query else ""))}"{extra}>{esc(text)}</a>'


def size(n: int | None) -> str:
    return "?" if n is None else human_bytes(n)


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def stamp(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
