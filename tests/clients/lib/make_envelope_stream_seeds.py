#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_envelope_stream (corpus/envelope_stream).

  make_envelope_stream_seeds.py OUT_DIR

Sealed-mode seeds are the target's own parameters (a plaintext length, a
context, edits, chunk sizes): the target encrypts them itself. Raw-mode
seeds are whole messages made by the independent reference implementation
(envelope_ref.py) under the target's fixed data key, so the raw mode starts
from messages that decrypt, and from their damaged forms.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envelope_ref  # noqa: E402

# fuzz_envelope_stream.c's data_key and fake_blob.
DATA_KEY = b"kms fuzz data key not a secret!\n"
BLOB = bytes(0x80 + i for i in range(80))
SALT_SEED = bytes(range(1, 9))


def sealed(seg8k, length, ctx, edits=(), chunks=b""):
    out = bytes([0, 1 if seg8k else 0]) + struct.pack(">H", length) + bytes([ctx]) + SALT_SEED
    out += bytes([len(edits)])
    for op, where, value in edits:
        out += bytes([op]) + struct.pack(">I", where) + bytes([value])
    return out + chunks


def raw(chunk, message):
    return bytes([1, chunk]) + message


def ref_message(plaintext, context, segment=4096):
    ctx = envelope_ref.canonical_context(context)
    msg, _ = envelope_ref.seal(DATA_KEY, bytes(32), bytes(7), segment, BLOB, ctx, plaintext)
    return msg


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seg = 4096 + 16
    hdr = 91 + len(BLOB) + 2  # the empty context: 00 00
    seeds = {
        "sealed-empty": sealed(False, 0, 0),
        "sealed-one-segment-ctx-required": sealed(False, 4096, 5),
        "sealed-two-segments-8k-two-pairs": sealed(True, 9000, 2),
        "sealed-wrong-context": sealed(False, 10, 0x0d),
        "sealed-flip-in-segment": sealed(False, 5000, 0, [(0, hdr + 100, 0x20)]),
        "sealed-flip-in-header": sealed(False, 5000, 0, [(0, 20, 0x01)]),
        "sealed-cut-at-boundary": sealed(False, 8192, 0, [(1, hdr + seg, 0)]),
        "sealed-cut-in-tag": sealed(False, 100, 0, [(1, hdr + 110, 0)]),
        "sealed-insert": sealed(False, 5000, 0, [(2, hdr + 4000, 0x41)]),
        "sealed-delete": sealed(False, 5000, 0, [(3, hdr + 4000, 0)]),
        "sealed-swap": sealed(False, 12000, 0, [(4, 0, 0)]),
        "sealed-repeat-last": sealed(False, 8192, 0, [(5, 1, 0)]),
        "sealed-chunked": sealed(False, 9000, 1, [], bytes([0, 7, 0xef, 0xf0, 0xf1, 3])),
        "raw-empty-plaintext": raw(0xff, ref_message(b"", {})),
        "raw-short": raw(5, ref_message(b"hello, envelope", {"tenant": "acme"})),
        "raw-truncated-header": raw(0, ref_message(b"", {})[:120]),
        "raw-no-body": raw(3, ref_message(b"", {})[:hdr]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
