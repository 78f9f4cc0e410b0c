"""The testbed's OCI registry: Debian's docker-registry (distribution 2.8) on loopback.

Two instances run side by side because distribution allows one auth provider each: one with
htpasswd basic auth, one with bearer tokens from :mod:`tests.testbed.tokenserver`. Images are
pushed with plain HTTP calls so tests depend on nothing but the registry itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import bcrypt
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def write_htpasswd(path: Path, user: str, password: str) -> None:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
    path.write_text(f"{user}:{hashed}\n")


def registry_config(
    *,
    port: int,
    storage: Path,
    auth: dict,
    notify_urls: list[str],
    notify_token: str,
) -> dict:
    endpoints = [
        {
            "name": f"endpoint-{index}",
            "url": url,
            "headers": {"Authorization": [f"Bearer {notify_token}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
            # Pulls (including every HEAD a poller makes) and blob uploads are noise here.
            "ignore": {"actions": ["pull"], "mediatypes": ["application/octet-stream"]},
        }
        for index, url in enumerate(notify_urls)
    ]
    config: dict = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "headwind-testbed"},
        "auth": auth,
    }
    if endpoints:
        config["notifications"] = {"events": {"includereferences": True}, "endpoints": endpoints}
    return config


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tiny_image(content: str, created: str | None = None) -> tuple[bytes, bytes, bytes]:
    """A valid single-layer image: (layer.tar.gz, config JSON, manifest JSON); ``created``
    (RFC 3339) goes into the config as a build tool writes it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        payload = content.encode()
        info = tarfile.TarInfo("headwind.txt")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    uncompressed = raw.getvalue()
    layer = gzip.compress(uncompressed, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"sh.headwind.test": content[:60]}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(uncompressed)]},
            **({"created": created} if created else {}),
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    return layer, config, manifest


class RegistryPusher:
    """Pushes tiny images with the distribution API, answering Basic or Bearer challenges."""

    def __init__(self, host: str, username: str, password: str,
                 ca_file: str | None = None) -> None:
        self.base = f"http://{host}"
        self.host = host
        self.session = requests.Session()
        # The token server speaks HTTPS with the testbed's CA (given per request: requests
        # lets REQUESTS_CA_BUNDLE override a session's verify).
        self.verify = ca_file or os.environ.get("HEADWIND_REGISTRY_CA_FILE") or True
        self.credentials = (username, password)
        self._tokens: dict[str, str] = {}

    def _request(self, method: str, url: str, scope: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        for _attempt in range(2):
            if scope in self._tokens:
                headers["Authorization"] = f"Bearer {self._tokens[scope]}"
                response = self.session.request(method, url, headers=headers, timeout=30, **kwargs)
            else:
                response = self.session.request(
                    method, url, headers=headers, auth=self.credentials, timeout=30, **kwargs
                )
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code != 401 or not challenge.lower().startswith("bearer"):
                return response
            self._tokens[scope] = self._fetch_token(challenge)
        return response

    def _fetch_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        response = self.session.get(realm, params=params, auth=self.credentials, timeout=30,
                                    verify=self.verify)
        response.raise_for_status()
        return response.json()["token"]

    def _upload_blob(self, repository: str, data: bytes) -> None:
        scope = f"repository:{repository}:pull,push"
        digest = _digest(data)
        head = self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}", scope)
        if head.status_code == 200:
            return
        start = self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/", scope)
        start.raise_for_status()
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        put = self._request(
            "PUT",
            f"{location}{separator}digest={digest}",
            scope,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        put.raise_for_status()

    def push_image(self, repository: str, tag: str, content: str | None = None,
                   created: str | None = None) -> str:
        """Push a unique tiny image and return its manifest digest (``sha256:...``);
        ``created`` sets the image config's creation time (RFC 3339)."""
        layer, config, manifest = tiny_image(content or f"{repository}:{tag}", created)
        self._upload_blob(repository, layer)
        self._upload_blob(repository, config)
        response = self._request(
            "PUT",
            f"{self.base}/v2/{repository}/manifests/{tag}",
            f"repository:{repository}:pull,push",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        response.raise_for_status()
        digest = response.headers["Docker-Content-Digest"]
        assert digest == _digest(manifest), "registry stored other bytes than we sent"
        return digest

    def list_tags(self, repository: str) -> list[str]:
        response = self._request(
            "GET", f"{self.base}/v2/{repository}/tags/list", f"repository:{repository}:pull"
        )
        response.raise_for_status()
        return response.json().get("tags") or []

    def head_digest(self, repository: str, reference: str) -> str:
        response = self._request(
            "HEAD",
            f"{self.base}/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]
