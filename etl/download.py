"""Fetch a MovieLens data set from files.grouplens.org when its folder is missing.

Before anything is unpacked, the zip is checked against the SHA-256 pinned for it in etl.datasets
(every official zip but ml-latest, which GroupLens republishes from time to time) and then against
the MD5 published beside it. It is unpacked beside the target first, and a failure removes the
download and any folder this made, so it never leaves a half-made or empty folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from etl.datasets import BASE_URL, KNOWN_DATASETS, OFFICIAL_SHA256
from etl.errors import EtlError
from etl.folders import make_folders, remove_empty

# Zips whose top-level folder is not named after the zip.
_FOLDER_IN_ZIP = {"ml-10m": "ml-10M100K"}

_MD5_TOKEN = re.compile(r"\b[0-9a-fA-F]{32}\b")
_CHUNK = 1 << 20
# ml-latest: GroupLens republishes it from time to time, so no SHA-256 can be pinned and its MD5 is the only check.
_MD5_ONLY = "MD5 matches (no SHA-256 is pinned for it: it changes over time, so its published MD5 is the only check)"

# What a failed or dropped connection raises; local disk errors (plain OSError) are
# deliberately not here so they are not misreported as the network being down.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)


def ensure_dataset(
    folder: Path,
    *,
    base_url: str | None = None,
    timeout: float = 30.0,
    hint: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Return ``folder``, first downloading and unpacking it if it does not exist.

    The data set is named by ``folder.name`` (e.g. ``ml-1m``). ``base_url`` defaults to
    ``$MOVIELENS_BASE_URL`` or :data:`BASE_URL` (a mirror must serve the official zips: the pinned
    SHA-256 digests apply to it too); ``timeout`` is per socket operation. ``hint`` is the command
    that points the caller at a local folder instead, for the error messages (default:
    ``etl build --input /path/to/<name>``).
    """
    if folder.is_dir():
        return folder
    if folder.exists():
        raise EtlError(f"MovieLens path {folder} exists but is not a folder.")
    name = folder.name
    if name not in KNOWN_DATASETS:
        example = hint or "etl build --input /path/to/ml-1m"
        raise EtlError(
            f"MovieLens folder {folder} does not exist, and {name!r} is not a data set that can be "
            f"downloaded (known: {', '.join(KNOWN_DATASETS)}). "
            f"Point to a folder holding MovieLens files: {example}"
        )
    hint = hint or f"etl build --input /path/to/{name}"
    base = (base_url or os.environ.get("MOVIELENS_BASE_URL") or BASE_URL).rstrip("/")
    zip_url = f"{base}/{name}.zip"

    log(f"{folder} does not exist: downloading {zip_url}")
    expected_md5 = _fetch_md5(f"{zip_url}.md5", timeout, hint)  # first: offline, it fails before anything is made
    made = make_folders(folder.parent)
    try:
        # Same file system as the target, so the final move is a cheap rename.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}-", suffix=".zip.part", dir=folder.parent)
        tmp_zip = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                found_md5, found_sha256 = _download(zip_url, out, timeout, hint)
            _check_digests(name, zip_url, expected_md5, found_md5, found_sha256)
            _unpack(tmp_zip, zip_url, _FOLDER_IN_ZIP.get(name, name), folder)
        finally:
            tmp_zip.unlink(missing_ok=True)
    except BaseException:
        remove_empty(made)
        raise
    checked = "SHA-256 and MD5 match" if name in OFFICIAL_SHA256 else _MD5_ONLY
    log(f"{name}.zip: {checked}; unpacked to {folder}")
    return folder


def _check_digests(name: str, zip_url: str, expected_md5: str, found_md5: str, found_sha256: str) -> None:
    """Raise EtlError, in one line, unless the download matches its pinned SHA-256 and its published MD5."""
    cleaned = "the download was deleted and nothing was unpacked"
    pinned = OFFICIAL_SHA256.get(name)
    if pinned is not None and found_sha256 != pinned:
        raise EtlError(
            f"{name}.zip: SHA-256 mismatch: expected {pinned}, found {found_sha256} (downloaded from {zip_url}). "
            f"The download is corrupt or not the official file; {cleaned}."
        )
    if found_md5 != expected_md5:
        raise EtlError(
            f"{name}.zip: MD5 mismatch: expected {expected_md5} (published at {zip_url}.md5), found {found_md5}. "
            f"The download is corrupt or was tampered with; {cleaned}."
        )


@contextmanager
def _network_errors(url: str, hint: str) -> Iterator[None]:
    """Turn connection failures into an EtlError that tells the user what to do."""
    try:
        yield
    except _NETWORK_ERRORS as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, urllib.error.URLError):
            reason = str(exc.reason)
        else:
            reason = str(exc) or type(exc).__name__
        raise EtlError(
            f"Download of {url} failed ({reason}). This machine may be offline: fetch and unzip "
            f"the data set elsewhere, copy it here and point to it: {hint}"
        ) from exc


def _fetch_md5(url: str, timeout: float, hint: str) -> str:
    """Return the lower-case digest published at ``url`` (its format varies by data set)."""
    with _network_errors(url, hint), urllib.request.urlopen(url, timeout=timeout) as resp:
        # The file is one short line; the cap guards against an HTML page served by mistake.
        text = resp.read(4096).decode("ascii", errors="replace")
    match = _MD5_TOKEN.search(text)
    if match is None:
        raise EtlError(f"No MD5 digest found in {url}.")
    return match.group(0).lower()


def _download(url: str, out: BinaryIO, timeout: float, hint: str) -> tuple[str, str]:
    """Stream ``url`` into ``out`` and return its MD5 and SHA-256; a progress bar only on a terminal."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with _network_errors(url, hint), urllib.request.urlopen(url, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        columns = (TextColumn(url.rsplit("/", 1)[-1]), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("download", total=int(length) if length else None)
            while chunk := resp.read(_CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
                bar.advance(task, len(chunk))
    return md5.hexdigest(), sha256.hexdigest()


def _unpack(archive: Path, url: str, inner: str, folder: Path) -> None:
    """Unpack ``inner/`` from ``archive`` as ``folder``, refusing members that would escape."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", suffix=".part", dir=folder.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = staging.resolve()
                # Check every member before writing any, so a bad zip writes nothing at all.
                for info in zf.infolist():
                    _check_member(info, root)
                zf.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise EtlError(f"{url} is not a valid zip file ({exc}).") from exc
        unpacked = staging / inner
        if not unpacked.is_dir():
            raise EtlError(f"{url} has no top-level folder {inner}/.")
        unpacked.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_member(info: zipfile.ZipInfo, root: Path) -> None:
    """Raise EtlError if ``info`` is a symlink or would land outside ``root``."""
    name = info.filename
    # zipfile itself would silently rewrite such names; refusing them is clearer.
    parts = re.split(r"[\\/]", name)
    unsafe = (
        PurePosixPath(name).is_absolute()
        or name.startswith("\\")
        or re.match(r"^[A-Za-z]:", name) is not None
        or ".." in parts
        or not (root / name).resolve().is_relative_to(root)
    )
    if unsafe:
        raise EtlError(f"Refusing to unpack zip member {name!r}: its path escapes the target folder.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise EtlError(f"Refusing to unpack zip member {name!r}: it is a symbolic link.")
