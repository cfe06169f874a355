"""``facesys serve`` at the door (issue 26, point 2): HTTPS with uvicorn's own TLS on a throwaway
certificate made here, refusals before binding (plain HTTP beyond this machine, bad certificate
files), and X-Forwarded-For trusted only from the proxy given with --behind-proxy."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from facesys.cli import main
from tests.service.conftest import Server, create_key

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

ANSWERING = (200, 503)  # /healthz once listening (503 while the model loads): the door's checks come before readiness


def make_certificate(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serves_https_with_its_certificate_and_not_plain_http(tmp_path):
    cert, key = make_certificate(tmp_path)
    gallery = tmp_path / "gallery"
    api_key = create_key(gallery, "ops", "admin")
    trusting = ssl.create_default_context(cafile=cert)
    door = Server(gallery, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https", verify=trusting).wait_ready(ANSWERING)
    try:
        with door.client(api_key) as client:
            answer = client.get("/v1/keys")
        assert answer.status_code in ANSWERING and answer.json()  # over TLS, checked against the certificate
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{door.port}/healthz", timeout=5)
        with pytest.raises(httpx.TransportError):  # a client that does not trust the certificate
            httpx.get(door.url + "/healthz", timeout=5)
    finally:
        door.stop()
    assert f"https://127.0.0.1:{door.port}/" in door.log_path.read_text()


def serve_args(gallery: Path, *options: str, monkeypatch) -> tuple[object, list[dict]]:
    """``facesys serve`` in-process with uvicorn.run replaced: (result, the arguments it got)."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    return CliRunner().invoke(main, ["--gallery", str(gallery), "serve", *options]), calls


def refused(result, calls, *words: str) -> str:
    line = result.stderr.strip()
    assert result.exit_code == 2 and not calls, result.output
    assert len(line.splitlines()) == 1 and "Traceback" not in line and all(w in line for w in words), line
    return line


def test_refusals_before_binding(tmp_path, monkeypatch):
    gallery = tmp_path / "gallery"
    create_key(gallery, "ops", "admin")
    cert, key = make_certificate(tmp_path)
    other_cert, other_key = make_certificate(tmp_path, "other")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")

    def serve(*options):
        return serve_args(gallery, *options, monkeypatch=monkeypatch)

    refused(*serve("--host", "0.0.0.0"), "--host 0.0.0.0", "plain HTTP", "--tls-cert", "--behind-proxy")
    refused(*serve("--tls-cert", str(cert)), "--tls-cert and --tls-key go together")
    refused(*serve("--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(key)), "missing.crt", "cannot serve HTTPS")
    refused(*serve("--tls-cert", str(cert), "--tls-key", str(other_key)), "cannot serve HTTPS")  # a key of another certificate
    refused(*serve("--tls-cert", str(tmp_path / "garbage.pem"), "--tls-key", str(key)), "garbage.pem")
    refused(*serve("--proxy-address", "10.0.0.2"), "--proxy-address: only with --behind-proxy")
    refused(*serve("--behind-proxy", "--proxy-address", "proxy.local"), "'proxy.local': not an IP address")
    assert other_cert.exists()


def test_what_uvicorn_is_told(tmp_path, monkeypatch):
    gallery = tmp_path / "gallery"
    create_key(gallery, "ops", "admin")
    cert, key = make_certificate(tmp_path)
    result, calls = serve_args(gallery, monkeypatch=monkeypatch)
    assert (
        result.exit_code == 0 and calls[0]["proxy_headers"] is False
    )  # X-Forwarded-For never trusted (uvicorn's default: 127.0.0.1's)
    assert calls[0]["ssl_certfile"] is None
    result, calls = serve_args(
        gallery, "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key), monkeypatch=monkeypatch
    )
    assert result.exit_code == 0 and (calls[0]["ssl_certfile"], calls[0]["ssl_keyfile"]) == (str(cert), str(key))
    result, calls = serve_args(gallery, "--host", "0.0.0.0", "--behind-proxy", monkeypatch=monkeypatch)
    assert result.exit_code == 0 and (calls[0]["proxy_headers"], calls[0]["forwarded_allow_ips"]) == (True, "127.0.0.1")
    options = ("--behind-proxy", "--proxy-address", "10.0.0.2", "--proxy-address", "10.1.0.0/16")
    result, calls = serve_args(gallery, "--host", "0.0.0.0", *options, monkeypatch=monkeypatch)
    assert calls[0]["forwarded_allow_ips"] == "10.0.0.2,10.1.0.0/16"


def guess(door: Server, forwarded_for: str) -> int:
    headers = {"Authorization": "Bearer fsk_wrong", "X-Forwarded-For": forwarded_for}
    with door.client() as client:
        return client.get("/v1/keys", headers=headers).status_code


def test_x_forwarded_for_counts_only_from_the_proxy_given(tmp_path):
    gallery = tmp_path / "gallery"
    create_key(gallery, "ops", "admin")
    door = Server(gallery).wait_ready(ANSWERING)  # no --behind-proxy: every guess is 127.0.0.1's, whatever it claims
    try:
        assert [guess(door, f"203.0.113.{i}") for i in range(6)] == [401] * 5 + [429]
    finally:
        door.stop()
    assert "refused an unknown key from 127.0.0.1" in door.log_path.read_text() and "203.0.113." not in door.log_path.read_text()
    door = Server(gallery, "--behind-proxy").wait_ready(ANSWERING)  # the proxy (127.0.0.1 by default) names the client
    try:
        assert [guess(door, f"203.0.113.{i}") for i in range(6)] == [401] * 6  # six clients, one guess each
        assert [guess(door, "198.51.100.7") for i in range(6)] == [401] * 5 + [429]
    finally:
        door.stop()
    logged = door.log_path.read_text()
    assert "refused an unknown key from 203.0.113.5" in logged and "from 198.51.100.7" in logged
    door = Server(gallery, "--behind-proxy", "--proxy-address", "10.9.9.9").wait_ready(ANSWERING)  # we are not that proxy
    try:
        assert [guess(door, f"203.0.113.{i}") for i in range(6)] == [401] * 5 + [429]
    finally:
        door.stop()
