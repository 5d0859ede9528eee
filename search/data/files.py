"""Where dataset files are looked for, and checksum-verified download into the bnnx cache.

Looked for, in order: `$BNNX_DATA/<name>`, `~/.cache/bnnx/<name>`, then system folders (e.g. the
Debian package `dataset-fashion-mnist`). Downloads go to the first of the first two and are only
kept when their MD5 matches the published one.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 60


class MissingDataError(FileNotFoundError):
    """Dataset files not found locally and not downloadable; the message says where and how."""


@dataclass(frozen=True)
class Remote:
    """A file as published: its URL and MD5 (the checksum the publishers and torchvision use)."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


def cache_dir(name: str) -> Path:
    root = os.environ.get("BNNX_DATA")
    return Path(root) / name if root else Path.home() / ".cache" / "bnnx" / name


def search_dirs(name: str, system: tuple[str, ...] = ()) -> list[Path]:
    dirs = [cache_dir(name)]
    if os.environ.get("BNNX_DATA"):
        dirs.append(Path.home() / ".cache" / "bnnx" / name)
    return dirs + [Path(s) for s in system]


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(remote: Remote, folder: Path) -> Path:
    """Fetch `remote` into `folder`; raises OSError (incl. URLError) or ValueError on a bad MD5."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.filename
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(remote.url, timeout=DOWNLOAD_TIMEOUT_S) as r:  # noqa: S310
        with open(partial, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    got = md5sum(partial)
    if got != remote.md5:
        partial.unlink()
        raise ValueError(f"{remote.url}: MD5 {got} != published {remote.md5}")
    os.replace(partial, target)
    return target


def missing_error(name: str, wanted: list[str], dirs: list[Path], hint: str, why: str) -> str:
    looked = ", ".join(str(d) for d in dirs)
    return (f"dataset {name!r}: {', '.join(wanted)} not found in {looked} and not downloadable "
            f"({why}); {hint}, or put the files in {cache_dir(name)}")


def offline() -> bool:
    return bool(os.environ.get("BNNX_OFFLINE"))


def fetch_all(name: str, remotes: list[Remote], hint: str, dirs: list[Path]) -> Path:
    """Download every remote into the cache folder, or raise MissingDataError saying why not.

    `dirs` are the folders already searched, named in the error.
    """
    wanted = [r.filename for r in remotes]
    if offline():
        raise MissingDataError(missing_error(name, wanted, dirs, hint, "BNNX_OFFLINE is set"))
    try:
        for remote in remotes:
            download(remote, cache_dir(name))
    except (OSError, ValueError, urllib.error.URLError) as exc:
        why = str(getattr(exc, "reason", exc)).splitlines()[0]
        raise MissingDataError(missing_error(name, wanted, dirs, hint, why)) from None
    return cache_dir(name)
