#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (small hand-made inputs; see README.md).

Run from anywhere: python3 fuzz/make_seeds.py. Deterministic, so re-running it
changes nothing unless this file changed.
"""
import gzip
import io
import os
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# (a) options: NUL-separated argument vectors (argv[0] is added by the target).
def argv(*args):
    return b"\0".join(a.encode() for a in args)


write("options", "basic", argv("/mnt", "-o", "lowerdir=/a:/b,upperdir=/u,workdir=/w"))
write("options", "source", argv("src", "/mnt", "-f", "-s", "-olowerdir=/l,ro,fsname=x\\,y"))
write("options", "kernel", argv("/mnt", "-o", "lowerdir=/l,allow_other,nosuid,nodev,noexec,"
                                "noatime,max_read=65536,timeout=1.5,threads=4,suid"))
write("options", "escapes", argv("/m", "-o", "lowerdir=a\\:b:c\\\\d,upperdir=u\\,v,workdir=w\\"))
write("options", "help", argv("-h", "-o"))
write("options", "dashdash", argv("-d", "--", "-weird", "-o", "lowerdir=/x"))
write("options", "lowerdirs", b"a\\:b:c::\\")
# A regression: a lone trailing backslash used to escape libfuse's joining comma.
write("options", "trailing-backslash", argv("/m", "-o", "lowerdir=/l,context=a\\", "-o", "nodev"))


# (b) records: a mode byte, then the bytes (see records.cpp).
def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


be = lambda n, w: n.to_bytes(w, "big")
# Mode 1: the target adds the checksum.
write("records", "object-plain", b"\x01" + b"\x01\x00" + varint(12345))
write("records", "object-all", b"\x01" + b"\x01\x07" + varint(7) + varint(1 << 40) + varint(4) + b"/a/b")
write("records", "link-group", b"\x01" + b"\x02" + varint(99) + varint(3))
write("records", "number", b"\x01" + b"\x03" + varint(2**64 - 1))
# Mode 0: stored bytes, checksum and all (this one's checksum is wrong).
write("records", "object-badsum", b"\x00" + b"\x01\x00\x05" + b"\0\0\0\0")
# Mode 2: keys.
write("records", "key-meta", b"\x02" + b"mformat.version")
write("records", "key-object", b"\x02" + b"o" + be(42, 8))
write("records", "key-whiteout", b"\x02" + b"w" + be(7, 8) + b"name")
write("records", "key-link", b"\x02" + b"l" + be(1, 4) + be(5, 8))
write("records", "key-alias", b"\x02" + b"a" + be(2, 4) + be(9, 8))
write("records", "key-ff", b"\x02" + b"\xff\xff")
# Mode 3: varints.
write("records", "varints", b"\x03" + varint(0) + varint(127) + varint(128) + varint(2**63) + b"\x80\x00")


# (c) archive: small layer tars, plain and compressed, benign and hostile.
def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = e.get("type", tarfile.REGTYPE)
            info.mode = e.get("mode", 0o644)
            info.mtime = 1700000000
            info.linkname = e.get("link", "")
            info.pax_headers = e.get("pax", {})
            data = e.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    # Drop the record padding after the two end blocks: smaller seeds.
    size = len(raw)
    while size > 0 and raw[size - 512:size] == b"\0" * 512:
        size -= 512
    return raw[: size + 1024]


D, S, H, C = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
layer = tar([
    {"name": "etc", "type": D, "mode": 0o755},
    {"name": "etc/hosts", "data": b"127.0.0.1 localhost\n"},
    {"name": "etc/link", "type": S, "link": "hosts"},
    {"name": "etc/hard", "type": H, "link": "etc/hosts"},
    {"name": "etc/.wh.gone", "data": b""},
    {"name": "var", "type": D, "mode": 0o700},
    {"name": "var/.wh..wh..opq", "data": b""},
    {"name": "var/x", "data": b"x" * 100, "pax": {"SCHILY.xattr.user.k": "v"}},
])
write("archive", "layer.tar", layer)
write("archive", "layer.tar.gz", gzip.compress(layer, mtime=0))
write("archive", "layer.tar.zst", subprocess.run(["zstd", "-q", "-c"], input=layer,
                                                  stdout=subprocess.PIPE, check=True).stdout)
write("archive", "gnu.tar", tar([{"name": "a/", "type": D}, {"name": "a/" + "n" * 120, "data": b"long"}],
                                fmt=tarfile.GNU_FORMAT))
write("archive", "dotdot.tar", tar([{"name": "../outside/x", "data": b"escape"}]))
write("archive", "symlink-escape.tar", tar([
    {"name": "esc", "type": S, "link": "../outside"},
    {"name": "esc/x", "data": b"escape"},
]))
write("archive", "hardlink-escape.tar", tar([{"name": "h", "type": H, "link": "../input"}]))
write("archive", "absolute.tar", tar([{"name": "/outside/abs", "data": b"abs"}]))
write("archive", "replace.tar", tar([
    {"name": "d", "type": D}, {"name": "d/f", "data": b"1"},
    {"name": "d", "type": S, "link": "/"}, {"name": "d/f", "data": b"2"},
    {"name": "dev", "type": C, "mode": 0o600},
]))
