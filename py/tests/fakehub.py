"""A loopback HTTP server that answers the Hugging Face hub requests huggingface_hub makes for a
download (repo info, tree listing, HEAD/GET of /<repo>/resolve/<rev>/<file>), serving repositories
from local folders; tests point HF_ENDPOINT at it. Weights (.safetensors, .bin) are served as LFS
files, whose ETag is their sha256, as the hub does. `requests` records every (method, path);
`lie_sha256` makes the server announce a wrong sha256 for a file (a damaged mirror)."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS = (".safetensors", ".bin")


class FakeHub:
    def __init__(self, repos: dict[str, Path], delay_s: float = 0.0):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self.lie_sha256: set[str] = set()
        self.delay_s = delay_s
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()

    def downloads(self) -> list[str]:
        """The files fetched (GET of a resolve URL), as repo/file."""
        return [p.split("/resolve/")[0].lstrip("/") + "/" + p.split("/")[-1]
                for m, p in self.requests if m == "GET" and "/resolve/" in p]

    def _files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _answer(self, h, body: bool):
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._send(h, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
            files = self._files(repo)
            if parts[4] == "revision":
                doc = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
            else:
                doc = [self._entry(f, p) for f, p in files.items()]
            return self._send(h, 200, json.dumps(doc).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in self.repos:
                return self._send(h, 404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, body)
            p = self._files(repo).get(name)
            if p is None:
                return self._send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, body)
            data = p.read_bytes()
            headers = {"X-Repo-Commit": COMMIT, "Content-Type": "application/octet-stream"}
            if name.endswith(LFS):
                headers.update({"X-Linked-Etag": f'"{self._sha256(name, data)}"', "X-Linked-Size": str(len(data))})
            else:
                headers["ETag"] = f'"{hashlib.sha1(data).hexdigest()}"'
            if body and self.delay_s:
                import time
                time.sleep(self.delay_s)  # slow enough that other workers arrive while it downloads
            return self._send(h, 200, data, headers, body)
        self._send(h, 404, b"not a hub URL", {}, body)

    def _sha256(self, name: str, data: bytes) -> str:
        real = hashlib.sha256(data).hexdigest()
        return hashlib.sha256(b"lie" + data).hexdigest() if name in self.lie_sha256 else real

    def _entry(self, name: str, p: Path) -> dict:
        data = p.read_bytes()
        e = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        if name.endswith(LFS):
            e["lfs"] = {"oid": self._sha256(name, data), "size": len(data), "pointerSize": 134}
        return e

    @staticmethod
    def _send(h, code: int, data: bytes, headers: dict, body: bool):
        h.send_response(code)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
