"""Write the leaderboard site: four static files (``index.html``, ``app.js``, ``style.css``, shipped in
this package, and ``data.js``, the run-sets' data) that work from a local folder (``file://``) and on
any static host, and fetch nothing from the network: the data is a script, not a request."""
from __future__ import annotations

import functools
import http.server
import json
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.io import atomic_write_text
from bench.leaderboard.data import site_data

ASSETS = Path(__file__).with_name("assets")
FILES = ("index.html", "app.js", "style.css")
DATA = "data.js"


def write_site(data: dict, out: Path) -> Path:
    """The site's files in ``out``; the same data gives the same bytes (no timestamp), so a committed
    site shows a diff only where the numbers moved."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"site: --out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        atomic_write_text(out / name, (ASSETS / name).read_text())
    # ASCII JSON is a JavaScript literal; <, > and & only occur inside its strings, where \u escapes
    # mean the same: no markup from a record reaches the file as markup, even pasted into a page
    text = json.dumps(data, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    atomic_write_text(out / DATA, f"window.BENCH_SITE = {text};\n")
    return out / "index.html"


def build_site(results: Path, runsets: list[str], out: Path) -> Path:
    """``bench site RUNSET... --out DIR``: the leaderboard of the run-sets' checked runs."""
    if not runsets:
        raise BenchError("site: name at least one run-set (a folder under --results)")
    return write_site(site_data(Path(results), list(runsets)), Path(out))


def serve(folder: Path, port: int = 8000) -> None:
    """Preview a built site at http://127.0.0.1:PORT/ until Ctrl-C (loopback only)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        print(f"serving {folder} at http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
