"""Where a gallery lives: a folder (SQLite) or a database URL (``postgresql://USER[:PASS]@HOST[:PORT]/DB``).

A URL may hold a password: it is used to connect and nowhere else. Messages, logs and file names
use :func:`public_form`, the URL without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from facesys.config import cache_dir

DATABASE_SCHEMES = ("postgresql", "postgres")


def is_database_url(location: str | Path) -> bool:
    """Whether ``location`` names a database server rather than a folder."""
    return isinstance(location, str) and urlsplit(location).scheme in DATABASE_SCHEMES and "://" in location


def public_form(location: str | Path) -> str | Path:
    """``location`` safe to show: a folder as it is, a URL without its password."""
    return public_url(location) if is_database_url(location) else location


def public_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter): for messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}@{hosts}" if at else hosts
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(key, value) for key, value in pairs if key != "password"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def index_folder_of(location: str | Path) -> Path:
    """Where the search index of the gallery at ``location`` is saved: the gallery folder, or for a
    database a folder of this machine's cache named after the URL (without its password)."""
    if not is_database_url(location):
        return Path(location)
    digest = hashlib.sha256(public_url(location).encode()).hexdigest()[:16]
    return cache_dir() / "index" / digest
