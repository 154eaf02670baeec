"""A local stand-in for the Hugging Face Hub's upload API: just the endpoints huggingface_hub's
``HfApi.create_repo`` and ``upload_folder`` call (without hf_xet: the git-LFS protocol), in the
Hub's request and response schemas. Point ``HF_ENDPOINT`` (or ``huggingface_hub.constants.ENDPOINT``)
at :attr:`FakeHub.url`; :attr:`FakeHub.repos` holds what arrived: {repo id: {"private", "files":
{path: bytes}, "commits": [message]}}.

Like the Hub, it stores ``*.safetensors`` through LFS (batch API, PUT, verify) and everything else
as regular files inside the commit's NDJSON; it refuses requests without a bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, token: str = "hf_fake_token"):
        self.token = token
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}  # oid -> content
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return True
                self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def do_POST(self):  # noqa: N802 (http.server's naming)
                hub.requests.append(("POST", self.path))
                body = self._body()
                if not self._authorised():
                    return
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    spec = json.loads(body)
                    rid = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
                    if rid in hub.repos:
                        return self._reply(409, {"error": "You already created this model repo", "url": f"{hub.url}/{rid}"})
                    hub.repos[rid] = {"private": spec.get("visibility") == "private" or spec.get("private") is True,
                                      "type": spec.get("type"), "files": {}, "commits": []}  # fmt: skip
                    return self._reply(200, {"url": f"{hub.url}/{rid}", "name": rid})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
                    if m[1] not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                         "shouldIgnore": False, "oid": None} for f in files]})  # fmt: skip
                if m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                    objects = json.loads(body)["objects"]
                    return self._reply(200, {"transfer": "basic", "objects": [
                        {"oid": o["oid"], "size": o["size"], "actions": {
                            "upload": {"href": f"{hub.url}/lfs/{o['oid']}", "header": {}},
                            "verify": {"href": f"{hub.url}/lfs/{o['oid']}/verify", "header": {}}}}
                        for o in objects]})  # fmt: skip
                if m := re.fullmatch(r"/lfs/([0-9a-f]{64})/verify", path):
                    ok = m[1] in hub.lfs and json.loads(body)["size"] == len(hub.lfs[m[1]])
                    return self._reply(200 if ok else 404, {})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
                    repo = hub.repos.get(m[1])
                    if repo is None:
                        return self._reply(404, {"error": "Repository not found"})
                    for line in body.decode().splitlines():
                        entry = json.loads(line)
                        value = entry["value"]
                        if entry["key"] == "header":
                            repo["commits"].append(value["summary"])
                        elif entry["key"] == "file":
                            repo["files"][value["path"]] = base64.b64decode(value["content"])
                        elif entry["key"] == "lfsFile":
                            repo["files"][value["path"]] = hub.lfs[value["oid"]]
                        elif entry["key"] == "deletedFile":
                            repo["files"].pop(value["path"], None)
                    oid = hashlib.sha1(json.dumps(sorted(repo["files"])).encode() + body).hexdigest()
                    return self._reply(200, {"commitUrl": f"{hub.url}/{m[1]}/commit/{oid}", "commitOid": oid,
                                             "pullRequestUrl": None})  # fmt: skip
                return self._reply(404, {"error": f"fake hub: no endpoint POST {path}"})

            def do_PUT(self):  # noqa: N802
                hub.requests.append(("PUT", self.path))
                body = self._body()
                if m := re.fullmatch(r"/lfs/([0-9a-f]{64})", self.path):
                    if hashlib.sha256(body).hexdigest() != m[1]:
                        return self._reply(400, {"error": "sha256 mismatch"})
                    hub.lfs[m[1]] = body
                    return self._reply(200, {})
                return self._reply(404, {"error": f"fake hub: no endpoint PUT {self.path}"})

        return Handler
