"""The dashboard's HTML shell and its files: `/`, `/jobs/{job_id}` and `/runs/{run_id}` all serve
static/index.html (it holds no data: the page asks the API for it, with the token), and
`/static/<path>` the files beside it. Public, but behind the Host check like every route; the
security headers come from BaseHandler."""

from __future__ import annotations

import os
import re

import tornado.web

from ..errors import NotFound
from .base import BaseHandler

STATIC_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
SHELL = "index.html"
# what is served, by extension; a file of any other kind is a 404 (nothing is guessed or sniffed)
CONTENT_TYPES = {
    ".html": "text/html; charset=UTF-8",
    ".js": "text/javascript; charset=UTF-8",
    ".css": "text/css; charset=UTF-8",
    ".svg": "image/svg+xml; charset=UTF-8",
    ".json": "application/json; charset=UTF-8",
    ".map": "application/json; charset=UTF-8",
    ".txt": "text/plain; charset=UTF-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
# each segment a plain name: no '..', no hidden file, no backslash or NUL (checked after
# tornado decoded %2e%2e and friends)
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_STATIC_PATH = re.compile(rf"{_SEGMENT}(/{_SEGMENT})*")


def content_type_of(path: str) -> str | None:
    """The Content-Type a static file is served with; None for a kind that is not served."""
    return CONTENT_TYPES.get(os.path.splitext(path)[1].lower())


def static_file(path: str) -> str:
    """The file under STATIC_ROOT that `path` names, or NotFound: only plain names, only regular
    files of a served kind, and never one outside the folder (a symlink is followed and then
    checked)."""
    if not _STATIC_PATH.fullmatch(path) or content_type_of(path) is None:
        raise NotFound(f"no file /static/{path[:200]}")
    root = os.path.realpath(STATIC_ROOT)
    full = os.path.realpath(os.path.join(root, *path.split("/")))
    if not full.startswith(root + os.sep) or not os.path.isfile(full):
        raise NotFound(f"no file /static/{path[:200]}")
    return full


class _FileHandler(BaseHandler):
    role = None  # public: no data in these files; the API routes they call need a key
    # a hash of the body, so a reload revalidates with If-None-Match and gets a 304 when unchanged
    compute_etag = tornado.web.RequestHandler.compute_etag

    def send_file(self, full: str, content_type: str) -> None:
        try:
            with open(full, "rb") as handle:
                body = handle.read()
        except OSError:  # removed or unreadable since it was checked
            raise NotFound("file not found") from None
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")  # may be kept, but asked about each time
        self.finish(body)


class PageHandler(_FileHandler):
    """Every page is the same shell: it reads the path and renders the page itself, so a deep
    link or a reload shows the same thing."""

    def get(self, job_id: str | None = None, run_id: str | None = None) -> None:
        self.send_file(os.path.join(STATIC_ROOT, SHELL), CONTENT_TYPES[".html"])


class StaticHandler(_FileHandler):
    def get(self, path: str) -> None:
        self.send_file(static_file(path), content_type_of(path))
