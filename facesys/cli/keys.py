"""``facesys keys``: the API keys of the facesys service (create, list, revoke). A key is stored
only as its hash: it is printed once, when made."""

from __future__ import annotations

import dataclasses
import time

import click

from facesys.cli import FacesysGroup, Settings, emit_json, main
from facesys.cli.gallery import local_time, open_gallery
from facesys.durations import parse_duration
from facesys.errors import FacesysError
from facesys.keys import SCOPES, ApiKey, parse_rate


class Checked(click.ParamType):
    """A value checked by one of facesys' parsers (a bad one: one line naming the option, exit 2)."""

    def __init__(self, name: str, parse):
        self.name, self.parse = name, parse

    def convert(self, value, param, ctx):
        try:
            return self.parse(value)
        except FacesysError as exc:
            self.fail(str(exc), param, ctx)


@main.group(cls=FacesysGroup)
def keys() -> None:
    """API keys for the facesys service (identify < enroll < admin: each scope includes the ones before)."""


@keys.command()
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), default="identify", show_default=True, help="What the key may do.")
@click.option(
    "--expires",
    type=Checked("duration", lambda text: parse_duration(text, "lifetime")),
    metavar="DURATION",
    help="Lifetime: a number and s, m, h, d, w or y (30d); the key answers 401 afterwards. Default: never.",
)
@click.option(
    "--rate",
    type=Checked("rate", parse_rate),
    metavar="N/PERIOD",
    help="Requests allowed per s, min, h or day (10/s, 100/min); the service answers 429 past it. Default: no limit.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def create(settings: Settings, name: str, scope: str, expires: float | None, rate: str | None, as_json: bool) -> None:
    """Make a key called NAME and print it (alone on stdout); it is shown only this once."""
    gallery = open_gallery(settings)
    key = gallery.create_key(name, scope, None if expires is None else time.time() + expires, rate)
    stored = gallery.key_for(key)
    name = stored.name if stored is not None else name
    if as_json:
        expires_at = stored.expires_at if stored is not None else None
        emit_json({"name": name, "scope": scope, "key": key, "expires_at": expires_at, "rate": rate})
    else:
        click.echo(key)
    shown = [scope] + ([f"expires {local_time(stored.expires_at)}"] if stored and stored.expires_at else [])
    shown += [f"rate {rate}"] if rate else []
    click.echo(f"key {name!r} ({', '.join(shown)}): shown only once; the gallery keeps only its hash, so store it now", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_keys(settings: Settings, as_json: bool) -> None:
    """Every key (never the key itself): name, scope, when made, active, expired or when revoked,
    when it expires, when last used (recorded by the service at most once a minute), its rate."""
    found = open_gallery(settings).keys()
    if as_json:
        emit_json({"keys": [dataclasses.asdict(k) for k in found]})
        return
    now = time.time()
    for k in found:
        click.echo("\t".join([k.name, k.scope, f"created {local_time(k.created_at)}", state(k, now), *limits(k)]))
    if not settings.quiet:
        active = sum(k.refusal(now) is None for k in found)
        click.echo(f"{len(found)} key{'s' if len(found) != 1 else ''}, {active} active", err=True)


def state(key: ApiKey, now: float) -> str:
    """``active``, ``expired`` or ``revoked <when>``."""
    if not key.active:
        return f"revoked {local_time(key.revoked_at)}"
    return "expired" if key.expired(now) else "active"


def limits(key: ApiKey) -> list[str]:
    """The list's last columns: expiry, last use and rate."""
    expires = f"expires {local_time(key.expires_at)}" if key.expires_at is not None else "never expires"
    used = f"last used {local_time(key.last_used_at)}" if key.last_used_at is not None else "never used"
    return [expires, used, f"rate {key.rate}" if key.rate else "no rate limit"]


@keys.command()
@click.argument("name")
@click.pass_obj
def revoke(settings: Settings, name: str) -> None:
    """Revoke the active key NAME: requests with it are refused from now on."""
    gallery = open_gallery(settings)
    gallery.revoke_key(name)
    click.echo(f"revoked key {name}")
    if not gallery.has_keys():  # a gallery that had keys never falls back to anonymous access
        click.echo("no active key is left: the service refuses every request until one is made", err=True)
