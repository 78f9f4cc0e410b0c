"""A Docker registry token server (the distribution token spec) for the testbed's bearer registry.

Run as ``python -m tests.testbed.tokenserver --port P --dir D --user U --password-file F
--cert C --key K``. It serves HTTPS (the realm is on another host:port than the registry, and
Headwind sends credentials to such a realm only over HTTPS). Valid Basic credentials get
pull+push on any repository; anonymous callers may pull repositories under ``public/`` (like
public repositories on Docker Hub or GHCR) and get nothing else.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hmac
import json
import secrets
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE = "headwind-testbed-registry"
ISSUER = "headwind-testbed-token-issuer"


def write_signing_material(directory: Path) -> Path:
    """Write the token key and its self-signed certificate; return the registry's root bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    (directory / "token.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bundle = directory / "token.crt"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return bundle


def make_handler(directory: Path, user: str, password: str):
    key = serialization.load_pem_private_key((directory / "token.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((directory / "token.crt").read_bytes())
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: tests read the registry's logs instead
            pass

        def _authenticated(self) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            try:
                given = base64.b64decode(header[6:]).decode()
            except ValueError:
                return False
            return hmac.compare_digest(given.encode(), f"{user}:{password}".encode())

        def do_GET(self):  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            if url.path != "/token":
                self.send_error(404)
                return
            query = parse_qs(url.query)
            authed = self._authenticated()
            if "Authorization" in self.headers and not authed:
                self.send_error(401)
                return
            access = []
            for scope in " ".join(query.get("scope", [])).split():
                parts = scope.split(":")
                if len(parts) != 3 or parts[0] != "repository":
                    continue
                if authed:
                    access.append(
                        {"type": "repository", "name": parts[1], "actions": parts[2].split(",")}
                    )
                elif parts[1].startswith("public/") and "pull" in parts[2].split(","):
                    access.append({"type": "repository", "name": parts[1], "actions": ["pull"]})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": user if authed else "",
                "aud": query.get("service", [SERVICE])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"x5c": x5c})
            body = json.dumps(
                {"token": token, "access_token": token, "expires_in": 300,
                 "issued_at": dt.datetime.now(dt.UTC).isoformat()}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args()
    password = args.password_file.read_text().strip()
    handler = make_handler(args.dir, args.user, password)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
