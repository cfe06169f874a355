"""``facesys gallery keygen|encrypt|rekey|decrypt``: a gallery's encryption at rest (facesys/gallery/sealing.py)."""

from __future__ import annotations

import click

from facesys.cli import Settings
from facesys.cli.gallery import gallery, open_gallery

KEY_FILE = click.Path(dir_okay=False)


def _key(path: str):
    from facesys.gallery.sealing import GalleryKey

    return GalleryKey.from_file(path)


def _done(settings: Settings, what: str, faces: int) -> None:
    if not settings.quiet:
        click.echo(f"{open_gallery(settings).location}: {what} ({faces} face{'s' if faces != 1 else ''})", err=True)


@gallery.command()
@click.argument("path", type=KEY_FILE)
def keygen(path: str) -> None:
    """Make a new random gallery key in the new file PATH (mode 0600; never overwrites a file).

    Keep it apart from the gallery and its backups: whoever holds both can read the faces."""
    from facesys.gallery.sealing import write_new_key

    write_new_key(path)
    click.echo(f"{path}: new gallery key written (keep a copy in a safe place: without it the gallery cannot be read)", err=True)


@gallery.command()
@click.option("--key-file", "key_file", type=KEY_FILE, required=True, help="The key to seal the gallery with.")
@click.pass_obj
def encrypt(settings: Settings, key_file: str) -> None:
    """Encrypt a gallery held in clear, in place (one transaction: a kill leaves it in clear or
    encrypted, never a mix), then erase the freed space and index files that held it in clear."""
    gallery = open_gallery(settings)
    faces = gallery.reseal(_key(key_file))
    _done(settings, f"encrypted with {key_file}", faces)
    for copy in gallery.copies_set_aside():  # all of them predate this encryption
        note = "a copy left by 'gallery repair' before the gallery was encrypted holds faces in clear"
        click.echo(f"warning: {copy}: {note}; delete it once it is not needed", err=True)


@gallery.command()
@click.option("--key-file", "key_file", type=KEY_FILE, required=True, help="The gallery's current key.")
@click.option("--new-key-file", "new_key_file", type=KEY_FILE, required=True, help="The key to seal it with from now on.")
@click.pass_obj
def rekey(settings: Settings, key_file: str, new_key_file: str) -> None:
    """Re-seal an encrypted gallery with a new key (one transaction, as encrypt)."""
    current, new = _key(key_file), _key(new_key_file)
    faces = open_gallery(settings).reseal(new, key=current)
    _done(settings, f"re-keyed: {new_key_file} opens it now, {key_file} no longer", faces)


@gallery.command()
@click.option("--key-file", "key_file", type=KEY_FILE, required=True, help="The gallery's key.")
@click.pass_obj
def decrypt(settings: Settings, key_file: str) -> None:
    """Store an encrypted gallery in clear again (one transaction, as encrypt)."""
    faces = open_gallery(settings).reseal(None, key=_key(key_file))
    _done(settings, "decrypted: it is stored in clear", faces)
