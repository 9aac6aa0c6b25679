"""A loopback stand-in for the Hugging Face Hub: serves one folder as a model repo.

Implements just what `HfApi.model_info` and `snapshot_download` use: the model info
endpoint (with its file list) and `resolve` for files (HEAD and GET). Records every path asked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def serve_repo(repo_id: str, folder: Path) -> tuple[ThreadingHTTPServer, list[str]]:
    """Start a server on 127.0.0.1 (random port) serving `folder` as `repo_id`.

    Returns:
        (server, the list of requested paths); call server.shutdown() when done.
    """
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _info(self):
            body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False,
                               "siblings": [{"rfilename": f} for f in files]}).encode()
            self._send(200, body, {"Content-Type": "application/json"})

        def _send(self, code, body, headers, head=False):
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _handle(self, head: bool):
            path = self.path.split("?")[0]
            requested.append(path)
            if path in (f"/api/models/{repo_id}", f"/api/models/{repo_id}/revision/main",
                        f"/api/models/{repo_id}/revision/{COMMIT}"):
                return self._info()
            prefix = f"/{repo_id}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[1]
                target = folder / name
                if name in files:
                    body = target.read_bytes()
                    etag = hashlib.sha1(body).hexdigest()
                    return self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'}, head)
            self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)

        def do_GET(self):
            self._handle(head=False)

        def do_HEAD(self):
            self._handle(head=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, requested
