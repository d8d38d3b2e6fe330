"""A stub of the Hugging Face Hub's HTTP API on 127.0.0.1: create a repo, preupload, commit.

Just the calls `huggingface_hub.HfApi.create_repo` and `create_commit` make for small files
(the card YAML is validated; every file is answered `uploadMode: regular`, so no LFS or Xet
transfer is needed). It keeps what it was sent (`repos`, `files`, `commits`, `auth`, `log`) for
the tests to check; a request it does not know is answered 404 and recorded in `unknown`.
`refuse` makes every call answer 403.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import yaml


class HubStub:
    def __init__(self, token: str = "hf_test_token") -> None:
        self.token = token
        self.refuse = False
        self.repos: dict[str, dict[str, Any]] = {}  # repo_id → create_repo body
        self.files: dict[str, dict[str, bytes]] = {}  # repo_id → path → bytes
        self.commits: list[dict[str, Any]] = []
        self.auth: list[str | None] = []  # the Authorization header of each request
        self.unknown: list[str] = []
        self.validated: list[str] = []
        self.log: list[str] = []  # README.md texts sent to /api/validate-yaml
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- the API ---------------------------------------------------------------------------

    def answer(self, method: str, path: str, body: bytes, auth: str | None) -> tuple[int, Any]:
        self.log.append(f"{method} {path}")
        if path.startswith("/api/agent-harnesses"):  # huggingface_hub's best-effort user-agent
            return 404, {"error": "not served by the stub"}  # lookup, unauthenticated; it copes
        self.auth.append(auth)
        if self.refuse:
            return 403, {"error": "You don't have the rights to create a dataset under this namespace"}
        if auth != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        parts = [unquote(p) for p in urlparse(path).path.strip("/").split("/")]
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate(json.loads(body))
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create(json.loads(body))
        if method == "POST" and len(parts) == 6 and parts[:2] == ["api", "datasets"]:
            repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
            if repo_id not in self.repos:
                return 404, {"error": "Repository not found"}
            if action == "preupload":
                files = json.loads(body).get("files", [])
                return 200, {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                }
            if action == "commit":
                return self._commit(repo_id, body)
        self.unknown.append(f"{method} {path}")
        return 404, {"error": f"the stub does not know {method} {path}"}

    def _validate(self, req: dict[str, Any]) -> tuple[int, Any]:
        """The checks of the Hub's own metadata validation that a card can fail here."""
        text = req.get("content", "")
        self.validated.append(text)
        try:
            meta = yaml.safe_load(text.split("---\n", 2)[1]) if text.startswith("---\n") else {}
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"YAML: {exc}"}]}
        errors = [
            f"'{k}' must be a string"
            for k in ("license", "pretty_name")
            if k in meta and not isinstance(meta[k], str)
        ]
        for c in meta.get("configs", []):
            if not isinstance(c.get("data_files"), list) or not c.get("config_name"):
                errors.append(f"config {c}: needs config_name and a data_files list")
        return (400, {"errors": [{"message": e} for e in errors]}) if errors else (200, {"warnings": []})

    def _create(self, req: dict[str, Any]) -> tuple[int, Any]:
        repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
        if repo_id in self.repos:
            return 409, {
                "error": "You already created this dataset repo",
                "url": f"{self.url}/datasets/{repo_id}",
            }
        self.repos[repo_id] = req
        self.files[repo_id] = {}
        return 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}

    def _commit(self, repo_id: str, body: bytes) -> tuple[int, Any]:
        header: dict[str, Any] = {}
        for line in body.decode("utf-8").splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                header = value
            elif item["key"] == "file":
                self.files[repo_id][value["path"]] = base64.b64decode(value["content"])
        self.commits.append({"repo_id": repo_id, **header})
        oid = f"{len(self.commits):040x}"
        return 200, {
            "commitUrl": f"{self.url}/datasets/{repo_id}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": None,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = stub.answer(
                    self.command, self.path, body, self.headers.get("Authorization")
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = _serve

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        return Handler
