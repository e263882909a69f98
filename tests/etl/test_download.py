"""Tests for etl.download against a real local HTTP server serving hand-made zips.

The pinned SHA-256 digests are of the official zips, so each test pins what it serves (or nothing: MD5 only)."""

from __future__ import annotations

import functools
import hashlib
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest

from etl import download
from etl.datasets import OFFICIAL_SHA256
from etl.download import KNOWN_DATASETS, ensure_dataset
from etl.errors import EtlError

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
U_ITEM = b"1|Toy Story (1995)|01-Jan-1995\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder and the URL of a real HTTP server serving it."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    # A short poll interval makes shutdown() return at once instead of after 0.5 s.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def pins(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The pinned digests ensure_dataset checks: none unless a test pins the zip it serves."""
    table: dict[str, str] = {}
    monkeypatch.setattr(download, "OFFICIAL_SHA256", table)
    return table


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where MOVIELENS_DIR's parent lives; deliberately not created: ensure_dataset must make it, and remove it
    again when it fails."""
    return tmp_path / "data"


def publish(
    root: Path,
    name: str,
    members: list[tuple[zipfile.ZipInfo | str, bytes]],
    md5_text: str | None = None,
) -> str:
    """Write ``name``.zip (and, unless md5_text is "", its .md5) into ``root``; return the digest."""
    zip_path = root / f"{name}.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for member, data in members:
            zf.writestr(member, data)
    digest = hashlib.md5(zip_path.read_bytes()).hexdigest()
    if md5_text != "":
        (root / f"{name}.zip.md5").write_text(md5_text or f"MD5 ({name}.zip) = {digest}\n")
    return digest


def closed_port_url() -> str:
    """A URL on a port nothing listens on, so connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_existing_folder_is_returned_without_network(data_dir: Path) -> None:
    folder = data_dir / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_bytes(U_DATA)

    # Any network access would hit the closed port and raise.
    assert ensure_dataset(folder, base_url=closed_port_url(), timeout=1) == folder
    assert [p.name for p in folder.iterdir()] == ["u.data"]
    assert (folder / "u.data").read_bytes() == U_DATA


@pytest.mark.parametrize("md5_format", ["MD5 ({name}.zip) = {digest}\n", "{digest}  {name}.zip\n"])
def test_download_verifies_and_unpacks(
    served: tuple[Path, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch, md5_format: str
) -> None:
    root, url = served
    members = [("ml-100k/u.data", U_DATA), ("ml-100k/u.item", U_ITEM)]
    digest = publish(root, "ml-100k", members)
    (root / "ml-100k.zip.md5").write_text(md5_format.format(name="ml-100k", digest=digest.upper()))
    monkeypatch.setenv("MOVIELENS_BASE_URL", url)

    folder = data_dir / "ml-100k"
    assert ensure_dataset(folder, timeout=5) == folder

    assert (folder / "u.data").read_bytes() == U_DATA
    assert (folder / "u.item").read_bytes() == U_ITEM
    assert sorted(p.name for p in data_dir.iterdir()) == ["ml-100k"], "temp files left behind"


def test_folder_inside_zip_is_renamed_to_requested_name(served: tuple[Path, str], data_dir: Path) -> None:
    root, url = served
    publish(root, "ml-10m", [("ml-10M100K/ratings.dat", b"1::122::5::838985046\n")])

    folder = ensure_dataset(data_dir / "ml-10m", base_url=url, timeout=5)

    assert (folder / "ratings.dat").read_bytes() == b"1::122::5::838985046\n"
    assert sorted(p.name for p in data_dir.iterdir()) == ["ml-10m"]


def test_checksum_mismatch_unpacks_nothing(served: tuple[Path, str], data_dir: Path) -> None:
    root, url = served
    wrong = "0123456789abcdef0123456789abcdef"
    actual = publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)], md5_text=f"{wrong}  ml-100k.zip\n")

    with pytest.raises(EtlError) as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    message = str(err.value)
    assert message.startswith("ml-100k.zip: MD5 mismatch: ") and "\n" not in message
    assert f"{url}/ml-100k.zip" in message
    assert wrong in message and actual in message
    assert not data_dir.exists(), "target, temp files or the folder made for them left behind"


@pytest.mark.parametrize("evil_kind", ["dotdot", "absolute"])
def test_escaping_member_is_refused(served: tuple[Path, str], data_dir: Path, tmp_path: Path, evil_kind: str) -> None:
    root, url = served
    evil = "../evil" if evil_kind == "dotdot" else str(tmp_path / "abs-evil")
    # A good member first: a refusal must come before anything at all is written.
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA), (zipfile.ZipInfo(evil), b"pwned")])

    with pytest.raises(EtlError, match="escapes") as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert evil in str(err.value)
    assert not data_dir.exists()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"pwned"]
    assert written == []


def test_symlink_member_is_refused(served: tuple[Path, str], data_dir: Path) -> None:
    root, url = served
    link = zipfile.ZipInfo("ml-100k/passwd")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA), (link, b"/etc/passwd")])

    with pytest.raises(EtlError, match="symbolic link") as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert "ml-100k/passwd" in str(err.value)
    assert not data_dir.exists()


def test_unknown_name_lists_known_data_sets(data_dir: Path) -> None:
    with pytest.raises(EtlError) as err:
        ensure_dataset(data_dir / "my-ratings", base_url=closed_port_url(), timeout=1)

    message = str(err.value)
    assert "does not exist" in message and message.endswith(": etl build --input /path/to/ml-1m")
    assert all(name in message for name in KNOWN_DATASETS)
    assert not data_dir.exists()


def test_errors_suggest_the_callers_command(data_dir: Path) -> None:
    hint = "make run MOVIELENS_DIR=/path/to/ml-100k"
    for name in ("my-ratings", "ml-100k"):  # no such data set; offline
        with pytest.raises(EtlError) as err:
            ensure_dataset(data_dir / name, base_url=closed_port_url(), timeout=1, hint=hint)
        assert str(err.value).endswith(f": {hint}")


def test_unreachable_server_explains_how_to_use_local_files(data_dir: Path) -> None:
    url = closed_port_url()

    with pytest.raises(EtlError) as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=1)

    message = str(err.value)
    assert f"{url}/ml-100k.zip.md5" in message
    assert "offline" in message and message.endswith(": etl build --input /path/to/ml-100k")
    assert not data_dir.exists()


def test_missing_md5_file_fails(served: tuple[Path, str], data_dir: Path) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)], md5_text="")

    with pytest.raises(EtlError, match="404") as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert f"{url}/ml-100k.zip.md5" in str(err.value)
    assert not data_dir.exists()


def test_md5_file_without_digest_fails(served: tuple[Path, str], data_dir: Path) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)], md5_text="<html>not here</html>\n")

    with pytest.raises(EtlError, match="No MD5 digest"):
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert not data_dir.exists()


def sha256_of(root: Path, name: str) -> str:
    return hashlib.sha256((root / f"{name}.zip").read_bytes()).hexdigest()


def test_every_official_zip_but_ml_latest_has_a_pinned_sha256() -> None:
    assert set(OFFICIAL_SHA256) == set(KNOWN_DATASETS) - {"ml-latest"}
    assert all(len(digest) == 64 and digest == digest.lower() for digest in OFFICIAL_SHA256.values())
    assert all(int(digest, 16) >= 0 for digest in OFFICIAL_SHA256.values())


def test_pinned_sha256_and_md5_match(served: tuple[Path, str], data_dir: Path, pins: dict[str, str]) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)])
    pins["ml-100k"] = sha256_of(root, "ml-100k")
    logged: list[str] = []

    folder = ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5, log=logged.append)

    assert (folder / "u.data").read_bytes() == U_DATA
    assert sorted(p.name for p in data_dir.iterdir()) == ["ml-100k"]
    assert logged == [
        f"{folder} does not exist: downloading {url}/ml-100k.zip",
        f"ml-100k.zip: SHA-256 and MD5 match; unpacked to {folder}",
    ]


def test_pinned_sha256_mismatch_leaves_nothing(
    served: tuple[Path, str], data_dir: Path, pins: dict[str, str], tmp_path: Path
) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)])  # its MD5 matches: only the pin catches it
    pins["ml-100k"] = pinned = "ab" * 32
    found = sha256_of(root, "ml-100k")

    with pytest.raises(EtlError) as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    message = str(err.value)
    assert message.startswith(f"ml-100k.zip: SHA-256 mismatch: expected {pinned}, found {found} ")
    assert f"{url}/ml-100k.zip" in message and "nothing was unpacked" in message and "\n" not in message
    assert not data_dir.exists(), "the partial download, the unpacked folder or the folder made for them is left"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_md5_is_a_second_check(served: tuple[Path, str], data_dir: Path, pins: dict[str, str]) -> None:
    root, url = served
    wrong = "0123456789abcdef0123456789abcdef"
    actual = publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)], md5_text=f"{wrong}  ml-100k.zip\n")
    pins["ml-100k"] = sha256_of(root, "ml-100k")

    with pytest.raises(EtlError) as err:
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert str(err.value).startswith(
        f"ml-100k.zip: MD5 mismatch: expected {wrong} (published at {url}/ml-100k.zip.md5)"
    )
    assert f"found {actual}." in str(err.value)
    assert not data_dir.exists()


def test_ml_latest_is_checked_by_its_md5_only(
    served: tuple[Path, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = served
    monkeypatch.setattr(download, "OFFICIAL_SHA256", OFFICIAL_SHA256)  # the real table: ml-latest is not in it
    publish(root, "ml-latest", [("ml-latest/ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.0,1\n")])
    logged: list[str] = []

    folder = ensure_dataset(data_dir / "ml-latest", base_url=url, timeout=5, log=logged.append)

    assert (folder / "ratings.csv").exists()
    assert logged[-1].startswith("ml-latest.zip: MD5 matches (no SHA-256 is pinned for it: it changes over time")


def test_dropped_download_removes_the_part_file_and_the_folders_it_made(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)])
    target = tmp_path / "new" / "data" / "ml-100k"
    parts: list[Path] = []

    def dropped(url: str, out: BinaryIO, timeout: float, hint: str) -> tuple[str, str]:
        out.write(b"PK\x03\x04 half a zip")
        parts.extend(target.parent.glob("*.part"))
        raise EtlError(f"Download of {url} failed (Connection reset by peer).")

    monkeypatch.setattr(download, "_download", dropped)

    with pytest.raises(EtlError, match="Connection reset"):
        ensure_dataset(target, base_url=url, timeout=5)

    assert len(parts) == 1 and not parts[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"], "new/ or new/data/ left behind"


def test_a_failure_keeps_folders_it_did_not_make(
    served: tuple[Path, str], data_dir: Path, pins: dict[str, str]
) -> None:
    root, url = served
    publish(root, "ml-100k", [("ml-100k/u.data", U_DATA)])
    pins["ml-100k"] = "ab" * 32
    data_dir.mkdir()

    with pytest.raises(EtlError, match="SHA-256 mismatch"):
        ensure_dataset(data_dir / "ml-100k", base_url=url, timeout=5)

    assert data_dir.is_dir() and list(data_dir.iterdir()) == []
