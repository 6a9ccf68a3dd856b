"""The web phone's files, served at ``/`` of the edge's HTTP listener (``softphone.edge.http``).

The page (``softphone/webphone/``: HTML, CSS and the project's own script) is plain files read
from the installed package. JsSIP, the SIP-over-WebSocket stack it runs on, comes from the npm
registry at the version pinned in ``softphone/webphone/package-lock.json`` and is bundled by the
build (``make webphone``: ``npm ci`` then esbuild) into ``softphone/webphone/dist/jssip.js``:
never fetched from a CDN by the browser, never committed. A missing bundle is answered 503
with the command that builds it, and the page says so.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["WebPhoneFiles", "bundle_path"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".wav": "audio/wav",
}
# the files a browser may fetch, by URL path (nothing else of the folder is served)
_ROUTES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/phone.js": "phone.js",
    "/phone.css": "phone.css",
    "/jssip.js": "dist/jssip.js",
    "/icon.svg": "icon.svg",
}


def _folder() -> Path:
    return Path(str(resources.files("softphone") / "webphone"))


def bundle_path() -> Path:
    """Where the build puts the JsSIP bundle."""
    return _folder() / "dist" / "jssip.js"


class WebPhoneFiles:
    """``get(path)`` -> (status, body, content type), or None for a path that is not ours."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or _folder()

    def get(self, path: str) -> tuple[int, bytes, str] | None:
        name = _ROUTES.get(path)
        if name is None:
            return None
        file = self.folder / name
        ctype = _TYPES.get(file.suffix, "application/octet-stream")
        try:
            return 200, file.read_bytes(), ctype
        except FileNotFoundError:
            if name.startswith("dist/"):
                return (503, b"/* the web phone's JsSIP bundle is not built: run `make webphone`"
                        b" (node and npm; on Debian: apt-get install nodejs npm) */\n", ctype)
            return 404, f"{path}: not installed\n".encode(), "text/plain; charset=utf-8"
