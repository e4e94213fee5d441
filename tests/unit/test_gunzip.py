"""gunzip through ISA-L (isal) and zlib: the landing's _Inflate gives the same bytes with either."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import pytest

from airflow_export_providers.core import gunzip
from airflow_export_providers.core.errors import VerificationError
from airflow_export_providers.core.landing import CHUNK, MiB, _Inflate
from tests.support.streams import Chunked

BACKENDS = ["isal", "zlib"]


def inflate(data: bytes, backend: str, chunk: int = 65536, read: int = 1 << 16) -> bytes:
    inflater = _Inflate(Chunked(data, chunk), "f.gz", backend=backend)
    parts = []
    while piece := inflater.read(read):
        parts.append(piece)
    return b"".join(parts)


def test_isal_is_the_default_when_installed() -> None:
    pytest.importorskip("isal")
    assert gunzip.BACKEND == "isal"
    assert _Inflate(Chunked(b"", 1), "f.gz").backend == "isal"


def sample(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghij,\n") for _ in range(rng.randrange(1, 12))) for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size]) + os.urandom(1000)  # some incompressible bytes too


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("chunk", "read"), [(1, 7), (1000, 65536), (CHUNK, CHUNK), (3 * MiB, 100)])
def test_same_bytes_as_zlib_multi_member(backend: str, chunk: int, read: int) -> None:
    if backend == "isal":
        pytest.importorskip("isal")
    if chunk == 1:
        plain = [sample(1, 20_000), b"", sample(2, 5000)]
    else:
        plain = [sample(1, 3 * MiB), b"", sample(2, 300_000), b"\0" * (5 * MiB)]
    data = b"".join(gzip.compress(p, compresslevel=level) for p, level in zip(plain, [6, 1, 9, 6], strict=False))
    expected = zlib.decompressobj(wbits=31).decompress(data)  # the first member
    assert expected == plain[0]
    assert inflate(data, backend, chunk, read) == b"".join(plain)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_padding_after_the_last_member(backend: str) -> None:
    if backend == "isal":
        pytest.importorskip("isal")
    data = gzip.compress(b"payload\n") + b"\0" * 4096
    assert inflate(data, backend, chunk=4096 + 20) == b"payload\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_step_is_bounded(backend: str) -> None:
    if backend == "isal":
        pytest.importorskip("isal")
    bomb = gzip.compress(b"\0" * (40 * MiB))
    inflater = _Inflate(Chunked(bomb, len(bomb)), "bomb.gz", backend=backend)
    total = 0
    while piece := inflater.read(CHUNK):
        assert len(piece) <= CHUNK and len(inflater._buf) <= CHUNK
        total += len(piece)
    assert total == 40 * MiB


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_and_garbage_are_refused(backend: str) -> None:
    if backend == "isal":
        pytest.importorskip("isal")
    data = gzip.compress(sample(3, 200_000))
    with pytest.raises(VerificationError, match="truncated"):
        inflate(data[:-20], backend, chunk=1000)
    with pytest.raises(VerificationError, match="not valid gzip"):
        inflate(b"plain text, not gzip" * 10, backend, chunk=100)
    with pytest.raises(VerificationError, match="not valid gzip"):
        inflate(data + b"trailing garbage", backend, chunk=1000)


def test_zlib_member_drains_output_held_inside() -> None:
    """Output that filled max_length exactly may still be inside zlib: drained before more input is read."""
    plain = b"\0" * (3 * 65536)
    member = gunzip.ZlibMember()
    out = member.decompress(gzip.compress(plain), 65536)
    assert len(out) == 65536 and not member.needs_input
    while not member.eof:
        out += member.decompress(b"", 65536)
    assert out == plain
