"""Compression bombs for the Content-Encoding tests: small bodies that inflate to 1 GiB.

Built without ever holding the inflated data: the deflate stream of 1 MiB of zeros is the same
byte block once the window is all zeros, so it is compressed twice and repeated. Every bomb
starts with a PNG signature, so the function cannot refuse it early as "not an image": only the
byte cap on the decoded stream can stop it.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache

import brotli  # type: ignore[import-untyped]

GIB = 1 << 30
_MIB = 1 << 20
PREFIX = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR"  # looks like a PNG to the sniffer
INFLATED = len(PREFIX) + GIB


@cache
def _raw_deflate() -> tuple[bytes, int, int]:
    """Raw deflate of PREFIX + 1 GiB of zeros, and the CRC-32 and Adler-32 of that data."""
    zeros = bytes(_MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = packer.compress(PREFIX + zeros) + packer.flush(zlib.Z_SYNC_FLUSH)
    steady = packer.compress(zeros) + packer.flush(zlib.Z_SYNC_FLUSH)
    assert steady == packer.compress(zeros) + packer.flush(zlib.Z_SYNC_FLUSH)
    # 1 + 1023 blocks of 1 MiB, then an empty final fixed-Huffman block.
    raw = first + steady * 1023 + b"\x03\x00"
    crc, adler = zlib.crc32(PREFIX), zlib.adler32(PREFIX)
    for _ in range(1024):
        crc, adler = zlib.crc32(zeros, crc), zlib.adler32(zeros, adler)
    return raw, crc, adler


@cache
def gzip_bomb() -> bytes:
    raw, crc, _ = _raw_deflate()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + raw + struct.pack("<II", crc, INFLATED & 0xFFFFFFFF)


@cache
def deflate_bomb() -> bytes:
    raw, _, adler = _raw_deflate()
    return b"\x78\xda" + raw + struct.pack(">I", adler)


@cache
def brotli_bomb() -> bytes:
    packer = brotli.Compressor(quality=5)
    zeros = bytes(_MIB)
    parts = [packer.process(PREFIX)] + [packer.process(zeros) for _ in range(1024)]
    return b"".join(parts) + bytes(packer.finish())


def gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def bombs() -> dict[str, tuple[str, bytes]]:
    """name -> (Content-Encoding header, body). Chains list codings in the order applied."""
    return {
        "gzip": ("gzip", gzip_bomb()),
        "x-gzip": ("x-gzip", gzip_bomb()),
        "deflate": ("deflate", deflate_bomb()),
        "br": ("br", brotli_bomb()),
        "gzip-gzip": ("gzip, gzip", gzip(gzip_bomb())),
        "br-gzip": ("br, gzip", gzip(brotli_bomb())),
        "identity-br": ("identity, br", brotli_bomb()),
    }
