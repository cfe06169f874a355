"""Search files for a removed person's data the way an attacker would: the float32 bytes of each of
their embeddings, read from the store before the removal, in every file under a folder."""

from __future__ import annotations

from pathlib import Path

from facesys.gallery.store import open_store


def person_vectors(where: str | Path, name: str) -> list[bytes]:
    """``name``'s embeddings in the gallery at ``where`` as float32 little-endian bytes."""
    with open_store(where) as store:
        wanted = {f.id for f in store.faces(name)}
        ids, vectors, _ = store.embeddings()
    return [v.astype("<f4").tobytes() for i, v in zip(ids.tolist(), vectors, strict=True) if i in wanted]


def files_holding(folder: Path, signatures: list[bytes]) -> list[str]:
    """Every file under ``folder`` that holds one of ``signatures`` (one deleted meanwhile holds nothing)."""
    found = []
    for path in sorted(folder.rglob("*")):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except FileNotFoundError:
            continue
        if any(s in data for s in signatures):
            found.append(str(path))
    return found
