"""``facesys serve``: the REST service and its page (see docs/service.md)."""

from __future__ import annotations

import click

from facesys import config
from facesys.cli import Settings, main


@main.command()
@click.option(
    "--host",
    default=config.SERVICE_HOST,
    show_default=True,
    help="Address to listen on (a non-loopback one needs API keys, and TLS or --behind-proxy).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=config.SERVICE_PORT, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes sharing the gallery.")
@click.option("--cors", multiple=True, metavar="ORIGIN", help="Let web pages of ORIGIN call the API (repeatable).")
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0.1),
    default=config.MAX_UPLOAD_MB,
    show_default=True,
    help="Largest request body.",
)
@click.option("--max-files", type=click.IntRange(min=1), default=config.MAX_FILES, show_default=True, help="Uploads per request.")
@click.option(
    "--max-pixels", type=click.IntRange(min=1), default=config.MAX_UPLOAD_PIXELS, show_default=True, help="Largest image decoded."
)
@click.option(
    "--max-request-pixels",
    type=click.IntRange(min=1),
    default=config.MAX_REQUEST_PIXELS,
    show_default=True,
    help="Pixels of all of a request's photos together (413 above).",
)
@click.option(
    "--request-timeout", type=click.FloatRange(min=0.01), default=config.REQUEST_TIMEOUT_S, show_default=True, help="Seconds."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=config.PHOTO_BATCH, show_default=True, help="Images per micro-batch."
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(min=0.0),
    default=config.BATCH_WAIT_MS,
    show_default=True,
    help="Longest a micro-batch waits to fill.",
)
@click.option(
    "--max-queue", type=click.IntRange(min=1), default=config.MAX_QUEUE, show_default=True, help="Requests waiting before 503."
)
@click.option(
    "--allow-anonymous",
    is_flag=True,
    help="Requests without a key are admin, even when the gallery has or had keys (loopback only).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False), metavar="CERT", help="Serve HTTPS with this PEM certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False), metavar="KEY", help="Its PEM private key (unencrypted).")
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="A TLS proxy forwards the requests: serve plain HTTP beyond this machine and trust its X-Forwarded-For.",
)
@click.option(
    "--proxy-address",
    multiple=True,
    metavar="IP",
    help="The proxy's address or network whose X-Forwarded-For is trusted (repeatable; with --behind-proxy). Default: 127.0.0.1.",
)
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info")
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    cors: tuple[str, ...],
    allow_anonymous: bool,
    tls_cert: str | None,
    tls_key: str | None,
    behind_proxy: bool,
    proxy_address: tuple[str, ...],
    log_level: str,
    **limits,
) -> None:
    """Serve the JSON API (/v1, docs at /docs) and the web page (/) over the gallery.

    Requests send an API key ('facesys keys create NAME --scope ...') as 'Authorization: Bearer KEY'.
    While the gallery never had a key, only a loopback address is served, and every request is
    admin; once it had one, every request needs a key (revoking the last one opens nothing),
    unless --allow-anonymous (loopback only) says otherwise.

    Beyond this machine it serves HTTPS (--tls-cert, --tls-key) or sits behind a TLS proxy
    (--behind-proxy; only --proxy-address's X-Forwarded-For is trusted, and no one's without it).
    """
    import uvicorn

    from facesys.errors import FacesysError
    from facesys.gallery import Gallery
    from facesys.service.settings import ServiceSettings, is_loopback

    gallery = Gallery(settings.gallery, key_file=settings.key_file)
    if gallery.exists():  # a database gallery that cannot be reached: one line, exit 2
        with gallery.open():  # an encrypted gallery without its key, or with another one: the same
            pass
    if allow_anonymous and not is_loopback(host):
        raise FacesysError(f"--allow-anonymous: only for a loopback --host (127.0.0.1, ::1, localhost), not {host}")
    if not is_loopback(host) and not gallery.has_keys():
        raise FacesysError(
            f"--host {host}: refusing to serve beyond this machine with no API key defined; "
            "create one first: facesys keys create NAME --scope admin"
        )
    tls = tls_files(tls_cert, tls_key)
    trusted = proxy_addresses(behind_proxy, proxy_address)
    if not is_loopback(host) and tls is None and not behind_proxy:
        raise FacesysError(
            f"--host {host}: refusing to serve plain HTTP beyond this machine; "
            "give --tls-cert CERT --tls-key KEY, or --behind-proxy when a TLS proxy forwards to it"
        )
    if allow_anonymous:
        announce = "--allow-anonymous: every request without a key is admin (this machine only)"
    elif not gallery.keys_required():
        announce = "no API key defined: every request is admin (this machine only) until one is made"
    elif not gallery.has_keys():
        announce = "every API key is revoked or expired: requests are refused (401) until one is made (facesys keys create)"
    else:
        announce = None
    if announce:
        click.echo(f"facesys serve: {announce}", err=True)
    if trusted and not settings.quiet:
        click.echo(f"facesys serve: behind a proxy: X-Forwarded-For names the client when sent from {trusted}", err=True)
    service = ServiceSettings(
        gallery=settings.gallery,
        key_file=settings.key_file,
        model=settings.model,
        detector=settings.detector,
        device=settings.device,
        weights=settings.weights,
        precision=settings.precision,
        threads=settings.threads,
        workers=workers,
        host=host,
        port=port,
        cors=cors,
        max_upload_bytes=int(limits["max_upload_mb"] * 2**20),
        max_files=limits["max_files"],
        max_pixels=limits["max_pixels"],
        max_request_pixels=limits["max_request_pixels"],
        request_timeout_s=limits["request_timeout"],
        batch_size=limits["batch_size"],
        batch_wait_ms=limits["batch_wait_ms"],
        max_queue=limits["max_queue"],
        allow_anonymous=allow_anonymous,
    )
    service.to_environment()
    if not settings.quiet:
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        click.echo(f"facesys serve: {scheme}://{shown}:{port}/ (API docs at /docs); {workers} worker(s)", err=True)
    # No access log: request paths hold people's names, and nothing here may keep a removed person.
    uvicorn.run(
        "facesys.service.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        server_header=False,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        proxy_headers=behind_proxy,  # else uvicorn would trust X-Forwarded-For from 127.0.0.1
        forwarded_allow_ips=trusted,
    )


def tls_files(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(certificate, key) once they load together as a server's (checked before binding: a missing,
    unreadable or mismatched file is one line), or None without TLS."""
    import ssl

    from facesys.errors import FacesysError

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise FacesysError("--tls-cert and --tls-key go together: give both (a PEM certificate and its private key)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else getattr(exc, "reason", None) or exc
        raise FacesysError(
            f"--tls-cert {cert} --tls-key {key}: cannot serve HTTPS with them ({reason}; "
            "a PEM certificate and its unencrypted private key are needed)"
        ) from None
    return cert, key


def proxy_addresses(behind_proxy: bool, given: tuple[str, ...]) -> str | None:
    """uvicorn's ``forwarded_allow_ips``: the proxy's addresses (default 127.0.0.1) with
    --behind-proxy, else None (nobody's X-Forwarded-For is trusted)."""
    import ipaddress

    from facesys.errors import FacesysError

    if given and not behind_proxy:
        raise FacesysError("--proxy-address: only with --behind-proxy")
    if not behind_proxy:
        return None
    for address in given:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise FacesysError(f"--proxy-address {address!r}: not an IP address or network") from None
    return ",".join(given or ("127.0.0.1",))
