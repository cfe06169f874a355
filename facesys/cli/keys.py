"""``facesys keys``: the API keys of the facesys service (create, list, revoke). A key is stored
only as its hash: it is printed once, when made."""

from __future__ import annotations

import click

from facesys.cli import FacesysGroup, Settings, emit_json, main
from facesys.cli.gallery import local_time, open_gallery
from facesys.keys import SCOPES


@main.group(cls=FacesysGroup)
def keys() -> None:
    """API keys for the facesys service (identify < enroll < admin: each scope includes the ones before)."""


@keys.command()
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), default="identify", show_default=True, help="What the key may do.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def create(settings: Settings, name: str, scope: str, as_json: bool) -> None:
    """Make a key called NAME and print it (alone on stdout); it is shown only this once."""
    gallery = open_gallery(settings)
    key = gallery.create_key(name, scope)
    stored = gallery.key_for(key)
    name = stored.name if stored is not None else name
    if as_json:
        emit_json({"name": name, "scope": scope, "key": key})
    else:
        click.echo(key)
    click.echo(f"key {name!r} ({scope}): shown only once; the gallery keeps only its hash, so store it now", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_keys(settings: Settings, as_json: bool) -> None:
    """Every key (never the key itself): name, scope, when made, active or when revoked."""
    found = open_gallery(settings).keys()
    if as_json:
        rows = [{"name": k.name, "scope": k.scope, "created_at": k.created_at, "revoked_at": k.revoked_at} for k in found]
        emit_json({"keys": rows})
        return
    for k in found:
        state = "active" if k.active else f"revoked {local_time(k.revoked_at)}"
        click.echo(f"{k.name}\t{k.scope}\tcreated {local_time(k.created_at)}\t{state}")
    if not settings.quiet:
        active = sum(k.active for k in found)
        click.echo(f"{len(found)} key{'s' if len(found) != 1 else ''}, {active} active", err=True)


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
