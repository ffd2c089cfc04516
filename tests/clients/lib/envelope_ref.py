#!/usr/bin/python3
"""envelope_ref.py: an independent implementation of the envelope format
(docs/envelope-format.md), written from that page in Python with the
`cryptography` package; it shares no code with libkmsclient.

  envelope_ref.py print          prints the page's test-vector section
  envelope_ref.py check DOC      fails unless DOC's vector section is exactly
                                 what `print` makes, and every vector's
                                 message opens (and fails with any one of a
                                 set of bytes changed)
  envelope_ref.py open KEYHEX FILE   opens a message with its data key
                                 (hex) and writes the plaintext to stdout

The wrapped data key of each vector is a real kms ciphertext blob
(docs/ciphertext-format.md), sealed here under that page's test key
00 01 .. 1f; `check` opens it and checks it holds the vector's data key.
"""
import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89kmsenv\n"
VERSION = 1
SUITE = 1
TAG = 16
SEG_MIN, SEG_MAX = 4096, 1 << 24
WRAPPED_MIN, WRAPPED_MAX = 59, 4185
CONTEXT_MAX = 2 + 64 * (4 + 256 + 1024)
TEST_KEK = bytes(range(32))


def canonical_context(pairs):
    """u16 count, then per pair (sorted by key bytes) u16 len key u16 len value."""
    items = sorted((k.encode(), v.encode()) for k, v in pairs.items())
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


def parse_context(b):
    (n,) = struct.unpack_from(">H", b, 0)
    at, prev, pairs = 2, None, {}
    for _ in range(n):
        (kl,) = struct.unpack_from(">H", b, at)
        k = b[at + 2:at + 2 + kl]
        at += 2 + kl
        (vl,) = struct.unpack_from(">H", b, at)
        v = b[at + 2:at + 2 + vl]
        at += 2 + vl
        if not 1 <= kl <= 256 or vl > 1024 or len(k) != kl or len(v) != vl:
            raise ValueError("context length out of range")
        if prev is not None and not prev < k:
            raise ValueError("context keys not strictly ascending")
        if b"\0" in k or b"\0" in v:
            raise ValueError("NUL in context")
        pairs[k.decode("utf-8", "strict")] = v.decode("utf-8", "strict")
        prev = k
    if at != len(b):
        raise ValueError("bytes after the context")
    return pairs


def kms_blob(key_id_bytes, version, region, iv, context, plaintext):
    """A kms ciphertext blob (docs/ciphertext-format.md) under TEST_KEK."""
    header = (b"KMS" + bytes([1]) + key_id_bytes + struct.pack(">I", version)
              + bytes([len(region)]) + region.encode() + iv
              + struct.pack(">I", len(plaintext)))
    return header + AESGCM(TEST_KEK).encrypt(iv, plaintext, header + context)


def open_kms_blob(blob, context):
    region_len = blob[24]
    hlen = 25 + region_len + 12 + 4
    header = blob[:hlen]
    iv = header[25 + region_len:25 + region_len + 12]
    return AESGCM(TEST_KEK).decrypt(iv, blob[hlen:], header + context)


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def header_bytes(segment_size, salt, prefix, wrapped, context, mac):
    return (MAGIC + bytes([VERSION, SUITE]) + struct.pack(">I", segment_size) + salt
            + prefix + struct.pack(">H", len(wrapped)) + wrapped
            + struct.pack(">I", len(context)) + context + mac)


def nonce(prefix, i, last):
    return prefix + struct.pack(">I", i) + bytes([1 if last else 0])


def seal(data_key, salt, prefix, segment_size, wrapped, context, plaintext):
    """Returns (message, intermediates)."""
    unmacced = header_bytes(segment_size, salt, prefix, wrapped, context, b"")
    k_header = hkdf(data_key, salt, b"kms envelope v1 header")
    mac = hmac.new(k_header, unmacced, hashlib.sha256).digest()
    k_payload = hkdf(data_key, salt, b"kms envelope v1 payload" + mac)
    gcm = AESGCM(k_payload)
    segs = [plaintext[i:i + segment_size] for i in range(0, len(plaintext), segment_size)]
    if not segs:
        segs = [b""]
    body = []
    for i, s in enumerate(segs):
        body.append(gcm.encrypt(nonce(prefix, i, i == len(segs) - 1), s, None))
    header = unmacced + mac
    return header + b"".join(body), {
        "header_key": k_header, "header_mac": mac, "payload_key": k_payload,
        "header": header, "segments": body}


def open_message(data_key, msg):
    """Strict: every rule of the page; raises ValueError on any failure."""
    if msg[:8] != MAGIC:
        raise ValueError("not an envelope message")
    if msg[8] != VERSION or msg[9] != SUITE:
        raise ValueError("unknown version or suite")
    (segment_size,) = struct.unpack_from(">I", msg, 10)
    if not SEG_MIN <= segment_size <= SEG_MAX:
        raise ValueError("segment size out of range")
    salt, prefix = msg[14:46], msg[46:53]
    (wl,) = struct.unpack_from(">H", msg, 53)
    if not WRAPPED_MIN <= wl <= WRAPPED_MAX:
        raise ValueError("wrapped key length out of range")
    wrapped = msg[55:55 + wl]
    (cl,) = struct.unpack_from(">I", msg, 55 + wl)
    if not 2 <= cl <= CONTEXT_MAX:
        raise ValueError("context length out of range")
    context = msg[59 + wl:59 + wl + cl]
    parse_context(context)
    hlen = 91 + wl + cl
    if len(msg) < hlen:
        raise ValueError("truncated header")
    header, mac = msg[:hlen], msg[hlen - 32:hlen]
    k_header = hkdf(data_key, salt, b"kms envelope v1 header")
    if not hmac.compare_digest(hmac.new(k_header, header[:-32], hashlib.sha256).digest(), mac):
        raise ValueError("header MAC")
    gcm = AESGCM(hkdf(data_key, salt, b"kms envelope v1 payload" + mac))
    body, full, out, i = msg[hlen:], segment_size + TAG, [], 0
    while True:
        last = len(body) <= full
        seg, body = body[:full], body[full:]
        if len(seg) < TAG or (last and i > 0 and len(seg) == TAG):
            raise ValueError("truncated")
        out.append(gcm.decrypt(nonce(prefix, i, last), seg, None))  # raises InvalidTag
        i += 1
        if last:
            return b"".join(out), wrapped, context


def hexlines(b, width=64):
    h = b.hex()
    return "\n".join(h[i:i + width] for i in range(0, len(h), width)) if h else "(empty)"


# The vectors: the data key of each is the plaintext of its wrapped key, a
# kms blob under the test key with the envelope's context as its AAD (as
# GenerateDataKey makes it).
VECTORS = [
    {
        "title": "An empty message, empty context",
        "segment_size": 4096,
        "data_key": bytes(range(0x80, 0xa0)),
        "salt": bytes(range(0x20, 0x40)),
        "prefix": bytes.fromhex("a0a1a2a3a4a5a6"),
        "key_id": b"kms-test-env-001", "version": 1, "region": "ap-south-1",
        "iv": bytes.fromhex("101112131415161718191a1b"),
        "context": {},
        "plaintext": b"",
        "plaintext_shown": "empty (0 bytes): one segment, the last, holding only its tag",
    },
    {
        "title": "One short segment, a two-pair context",
        "segment_size": 4096,
        "data_key": bytes(range(0x40, 0x60)),
        "salt": bytes(range(0x60, 0x80)),
        "prefix": bytes.fromhex("b0b1b2b3b4b5b6"),
        "key_id": b"kms-test-env-002", "version": 2, "region": "ap-south-1",
        "iv": bytes.fromhex("202122232425262728292a2b"),
        "context": {"purpose": "backup", "tenant": "42"},
        "plaintext": b"Hello, India!",
        "plaintext_shown": '"Hello, India!" (13 bytes, ASCII)',
    },
    {
        "title": "Three segments of 4,096 bytes: two full, one short",
        "segment_size": 4096,
        "data_key": bytes(range(0xc0, 0xe0)),
        "salt": bytes(range(0xe0, 0x100)),
        "prefix": bytes.fromhex("c0c1c2c3c4c5c6"),
        "key_id": b"kms-test-env-003", "version": 7, "region": "ap-south-2",
        "iv": bytes.fromhex("303132333435363738393a3b"),
        "context": {"dataset": "kyc-2026"},
        "plaintext": bytes(i % 251 for i in range(9000)),
        "plaintext_shown": "9,000 bytes, byte i = i mod 251 (segments of 4,096, 4,096 and 808 bytes)",
    },
]

SECTION = "## Test vectors"


def render():
    out = [SECTION, "",
           "Made by `tests/clients/lib/envelope_ref.py print`, an implementation of this",
           "page in Python (`cryptography`) that shares no code with libkmsclient.",
           "`envelope_vectors_ref` (ctest) checks that this section is exactly what it",
           "makes; `client_envelope_format` (ctest) rebuilds every value below with",
           "libkmsclient's code (`clients/lib/envelope_format.c`) and opens each",
           "message. Each wrapped key is a real kms ciphertext blob",
           "(docs/ciphertext-format.md) sealed under that page's test key",
           "`000102..1f` with the vector's context as its context; it holds the",
           "vector's data key.",
           "",
           "Each vector's values are also in the fenced `envelope-vector` block below",
           "it, one `name = hex` per line, for programs to read.", ""]
    for n, v in enumerate(VECTORS, 1):
        ctx = canonical_context(v["context"])
        wrapped = kms_blob(v["key_id"], v["version"], v["region"], v["iv"], ctx, v["data_key"])
        msg, mid = seal(v["data_key"], v["salt"], v["prefix"], v["segment_size"], wrapped,
                        ctx, v["plaintext"])
        shown = "{" + ", ".join('"%s": "%s"' % kv for kv in v["context"].items()) + "}"
        out += ["### Vector %d: %s" % (n, v["title"]), "",
                "| input | value |", "|---|---|",
                "| segment size | %d |" % v["segment_size"],
                "| data key | `%s` |" % v["data_key"].hex(),
                "| salt | `%s` |" % v["salt"].hex(),
                "| nonce prefix | `%s` |" % v["prefix"].hex(),
                "| encryption context | `%s` |" % shown,
                "| plaintext | %s |" % v["plaintext_shown"], ""]
        block = [("segment_size", "%d" % v["segment_size"]),
                 ("data_key", v["data_key"].hex()), ("salt", v["salt"].hex()),
                 ("nonce_prefix", v["prefix"].hex()), ("wrapped_key", wrapped.hex()),
                 ("context", ctx.hex()),
                 ("plaintext_len", "%d" % len(v["plaintext"])),
                 ("plaintext_sha256", hashlib.sha256(v["plaintext"]).hexdigest()),
                 ("header_key", mid["header_key"].hex()),
                 ("header_mac", mid["header_mac"].hex()),
                 ("payload_key", mid["payload_key"].hex()),
                 ("header", mid["header"].hex())]
        for i, s in enumerate(mid["segments"]):
            block.append(("segment_%d_tag" % i, s[-TAG:].hex()))
        block += [("message_len", "%d" % len(msg)),
                  ("message_sha256", hashlib.sha256(msg).hexdigest())]
        if len(msg) <= 512:
            block.append(("message", msg.hex()))
        out += ["Header (%d bytes):" % len(mid["header"]), "", "```",
                hexlines(mid["header"]), "```", ""]
        if len(msg) <= 512:
            out += ["Message (%d bytes):" % len(msg), "", "```", hexlines(msg), "```", ""]
        out += ["```envelope-vector"] + ["%s = %s" % kv for kv in block] + ["```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def doc_section(doc):
    text = open(doc, encoding="utf-8").read()
    at = text.find("\n" + SECTION + "\n")
    if at < 0:
        sys.exit("envelope_ref: %s has no '%s' section" % (doc, SECTION))
    rest = text[at + 1:]
    end = rest.find("\n## ", len(SECTION))
    return rest if end < 0 else rest[:end + 1]


def flip_checks(data_key, msg, plaintext):
    """Every one of a spread of single-bit changes must make open fail."""
    positions = sorted(set([0, 8, 9, 10, 13, 14, 46, 53, 55, len(msg) - 1, len(msg) // 2]
                           + list(range(0, len(msg), max(1, len(msg) // 97)))))
    for p in positions:
        bad = bytearray(msg)
        bad[p] ^= 0x01
        try:
            open_message(data_key, bytes(bad))
        except Exception:
            continue
        sys.exit("envelope_ref: a flipped bit at offset %d still opens" % p)
    for cut in (len(msg) - 1, len(msg) - TAG - 1):
        try:
            open_message(data_key, msg[:cut])
        except Exception:
            continue
        sys.exit("envelope_ref: a message cut to %d bytes still opens" % cut)
    try:
        open_message(data_key, msg + b"\0")
    except Exception:
        pass
    else:
        sys.exit("envelope_ref: a byte appended still opens")


def check(doc):
    want = render()
    got = doc_section(doc)
    if got.rstrip("\n") != want.rstrip("\n"):
        import difflib
        sys.stdout.writelines(difflib.unified_diff(
            got.splitlines(True), want.splitlines(True), "doc", "envelope_ref.py print"))
        sys.exit("envelope_ref: %s's test vectors differ from what this implementation makes"
                 % doc)
    for n, v in enumerate(VECTORS, 1):
        ctx = canonical_context(v["context"])
        wrapped = kms_blob(v["key_id"], v["version"], v["region"], v["iv"], ctx, v["data_key"])
        msg, _ = seal(v["data_key"], v["salt"], v["prefix"], v["segment_size"], wrapped, ctx,
                      v["plaintext"])
        pt, w, c = open_message(v["data_key"], msg)
        if pt != v["plaintext"] or open_kms_blob(w, c) != v["data_key"]:
            sys.exit("envelope_ref: vector %d does not open to its plaintext" % n)
        flip_checks(v["data_key"], msg, v["plaintext"])
    print("envelope_ref: %d vectors match %s, open, and fail when changed" %
          (len(VECTORS), doc))


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "print":
        sys.stdout.write(render())
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "open":
        msg = open(sys.argv[3], "rb").read()
        pt, _, _ = open_message(bytes.fromhex(sys.argv[2]), msg)
        sys.stdout.buffer.write(pt)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
