#!/usr/bin/python3
"""pseudonym_ref.py: an independent implementation of the pseudonym format
(docs/pseudonyms.md), written from that page and the canonical context
encoding of docs/ciphertext-format.md in Python with the standard library
only (hmac, hashlib, base64); it shares no code with kms.

  pseudonym_ref.py print        prints the page's test-vector section
  pseudonym_ref.py check DOC    fails unless DOC's vector section is exactly
                                what `print` makes, and the vectors keep the
                                format's promises (order of the context does
                                not matter, the text form's shape and length)

The vectors use one published test key, 00 01 .. 1f, for every key version;
in kmsd each version is its own HMAC key in the HSM.
"""
import base64
import hashlib
import hmac
import re
import struct
import sys

DOMAIN = b"kms-pseudonym-v1\x00"
VALUE_MIN, VALUE_MAX = 1, 1024
VERSION_MAX = 2**32 - 1
TEXT_MAX = 55
TEST_KEY = bytes(range(32))
TEST_KEY_ID = "k-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6e"
TEXT_FORM = re.compile(r"kp_([0-9a-f]{8})_([1-9][0-9]{0,9})_([a-z2-7]{32})")


def canonical_context(pairs):
    """docs/ciphertext-format.md section 2: the pairs sorted by key bytes
    (bytes compare as memcmp, the shorter first on a common prefix), as
    u16 count, then per pair u16 key length, key, u16 value length, value."""
    if len(pairs) > 64:
        raise ValueError("more than 64 pairs")
    enc = []
    for k, v in pairs:
        kb, vb = k.encode("utf-8"), v.encode("utf-8")
        if not 1 <= len(kb) <= 256 or len(vb) > 1024 or b"\0" in kb + vb:
            raise ValueError("a context pair breaks the rules")
        enc.append((kb, vb))
    enc.sort()
    if any(a[0] == b[0] for a, b in zip(enc, enc[1:])):
        raise ValueError("a context key appears twice")
    out = struct.pack(">H", len(enc))
    for kb, vb in enc:
        out += struct.pack(">H", len(kb)) + kb + struct.pack(">H", len(vb)) + vb
    return out


def message(pairs, value):
    if not VALUE_MIN <= len(value) <= VALUE_MAX:
        raise ValueError("a value is 1..1024 bytes")
    ctx = canonical_context(pairs)
    return DOMAIN + struct.pack(">I", len(ctx)) + ctx + struct.pack(">I", len(value)) + value


def text_form(key_id, version, mac):
    if not re.fullmatch(r"k-[0-9a-f]{32}", key_id) or not 1 <= version <= VERSION_MAX:
        raise ValueError("bad key id or version")
    b32 = base64.b32encode(mac[:20]).decode("ascii")
    if "=" in b32 or len(b32) != 32:
        raise ValueError("20 bytes are 32 base32 characters")
    return "kp_%s_%d_%s" % (key_id[2:10], version, b32.lower())


def pseudonym(key, key_id, version, pairs, value):
    msg = message(pairs, value)
    mac = hmac.new(key, msg, hashlib.sha256).digest()
    return msg, mac, text_form(key_id, version, mac)


def hexlines(b, width=64):
    h = b.hex()
    return "\n".join(h[i:i + width] for i in range(0, len(h), width))


THREE = [("tenant", "acme-bank"), ("purpose", "analytics"), ("dataset", "loans-2026")]
VECTORS = [
    {
        "title": "A phone number, empty context",
        "version": 1, "context": [],
        "value": b"+919876543210",
        "value_shown": '"+919876543210" (13 bytes, ASCII)',
    },
    {
        "title": "An Aadhaar-like number, one pair",
        "version": 1, "context": [("purpose", "kyc")],
        "value": b"999941057058",
        "value_shown": '"999941057058" (12 bytes, ASCII)',
    },
    {
        "title": "Three pairs, version 2",
        "version": 2, "context": THREE,
        "value": b"+919876543210",
        "value_shown": '"+919876543210" (13 bytes, ASCII)',
    },
    {
        "title": "The same three pairs in another order",
        "version": 2, "context": [THREE[2], THREE[0], THREE[1]],
        "value": b"+919876543210",
        "value_shown": '"+919876543210" (13 bytes, ASCII)',
        "same_as": 3,
    },
    {
        "title": "Non-ASCII UTF-8: a name in Devanagari, context keys with a common prefix",
        "version": 7,
        "context": [("tenant-id", "42"), ("region", "ಬೆಂಗಳೂರು"), ("tenant", "भारत")],
        "value": "अनन्या शर्मा".encode("utf-8"),
        "value_shown": '"अनन्या शर्मा" (34 bytes of UTF-8: 11 code points of U+0900..U+097F and a space)',
    },
    {
        "title": "The longest value and the largest version",
        "version": VERSION_MAX, "context": [("purpose", "bulk")],
        "value": bytes(range(256)) * 4,
        "value_shown": "1,024 bytes, byte i = i mod 256",
    },
    {
        "title": "A value with 0x00 bytes, a pair with an empty value",
        "version": 1, "context": [("a", "")],
        "value": bytes.fromhex("00696400ff00"),
        "value_shown": "6 bytes, three of them 0x00",
    },
]

SECTION = "## Test vectors"


def context_shown(pairs):
    return "{" + ", ".join('"%s": "%s"' % kv for kv in pairs) + "}"


def render():
    out = [SECTION, "",
           "Made by `tests/common/pseudonym_ref.py print`, an implementation of this",
           "page in Python (standard library only) that shares no code with kms.",
           "`pseudonym_vectors_ref` (ctest) checks that this section is exactly what",
           "it makes; `test_pseudonym` (ctest) rebuilds every message and pseudonym",
           "below with `common/pseudonym.c` and OpenSSL's HMAC.", "",
           "Every vector uses the test key `000102..1f` (the 32 bytes 00 01 .. 1f,",
           "in full in each block) and the key id",
           "`%s`. The key version changes only the" % TEST_KEY_ID,
           "text form here, because the vectors use one test key for every version;",
           "in kmsd each version is its own HMAC key, so its MACs differ too.", "",
           "Each vector's values are also in the fenced `pseudonym-vector` block below",
           "it, one `name = value` per line, for programs to read: `context_pair` is",
           "`key:value` in hex, one line a pair in the order given; the others are",
           "hex but `key_id`, `version` and `pseudonym`.", ""]
    for n, v in enumerate(VECTORS, 1):
        msg, mac, text = pseudonym(TEST_KEY, TEST_KEY_ID, v["version"], v["context"],
                                   v["value"])
        ctx = canonical_context(v["context"])
        note = ""
        if "same_as" in v:
            note = " (vector %d's pairs, given in another order)" % v["same_as"]
        elif len(v["context"]) > 1:
            note = " (given in this order)"
        out += ["### Vector %d: %s" % (n, v["title"]), "",
                "| input | value |", "|---|---|",
                "| key version | %d |" % v["version"],
                "| context | `%s`%s |" % (context_shown(v["context"]), note),
                "| value | %s |" % v["value_shown"], ""]
        if len(v["value"]) <= 64:
            out += ["Value: `%s`" % v["value"].hex(), ""]
        out += ["Canonical context (%d bytes): `%s`" % (len(ctx), ctx.hex()), "",
                "Pseudonym message (%d bytes):" % len(msg), "", "```", hexlines(msg), "```",
                "",
                "HMAC-SHA256: `%s`" % mac.hex(), "",
                "Pseudonym (%d characters): `%s`" % (len(text), text), ""]
        if "same_as" in v:
            out += ["The same message and pseudonym as vector %d." % v["same_as"], ""]
        block = [("key", TEST_KEY.hex()), ("key_id", TEST_KEY_ID),
                 ("version", "%d" % v["version"])]
        block += [("context_pair", "%s:%s" % (k.encode().hex(), val.encode().hex()))
                  for k, val in v["context"]]
        block += [("value", v["value"].hex()), ("message", msg.hex()), ("mac", mac.hex()),
                  ("pseudonym", text)]
        out += ["```pseudonym-vector"] + ["%s = %s" % kv for kv in block] + ["```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def doc_section(doc):
    text = open(doc, encoding="utf-8").read()
    at = text.find("\n" + SECTION + "\n")
    if at < 0:
        sys.exit("pseudonym_ref: %s has no '%s' section" % (doc, SECTION))
    rest = text[at + 1:]
    end = rest.find("\n## ", len(SECTION))
    return rest if end < 0 else rest[:end + 1]


def promises():
    """What the format promises, checked on the vectors."""
    made = []
    for n, v in enumerate(VECTORS, 1):
        msg, mac, text = pseudonym(TEST_KEY, TEST_KEY_ID, v["version"], v["context"],
                                   v["value"])
        m = TEXT_FORM.fullmatch(text)
        if not m or len(text) > TEXT_MAX or int(m.group(2)) != v["version"]:
            sys.exit("pseudonym_ref: vector %d's text form is malformed" % n)
        if m.group(1) != TEST_KEY_ID[2:10] or not msg.startswith(DOMAIN):
            sys.exit("pseudonym_ref: vector %d names another key or lacks the prefix" % n)
        if "same_as" in v and made[v["same_as"] - 1] != (msg, text):
            sys.exit("pseudonym_ref: vector %d differs from vector %d: the order of the "
                     "context's pairs changed the pseudonym" % (n, v["same_as"]))
        made.append((msg, text))
    if len(set(t for _, t in made)) != len(made) - sum("same_as" in v for v in VECTORS):
        sys.exit("pseudonym_ref: two different inputs made the same pseudonym")
    longest = [t for (_, t), v in zip(made, VECTORS) if v["version"] == VERSION_MAX]
    if not longest or len(longest[0]) != TEXT_MAX:
        sys.exit("pseudonym_ref: the largest version does not make a %d-character text"
                 % TEXT_MAX)
    for bad in (b"", bytes(VALUE_MAX + 1)):
        try:
            message([], bad)
        except ValueError:
            continue
        sys.exit("pseudonym_ref: a value of %d bytes was taken" % len(bad))


def check(doc):
    want = render()
    got = doc_section(doc)
    if got.rstrip("\n") != want.rstrip("\n"):
        import difflib
        sys.stdout.writelines(difflib.unified_diff(
            got.splitlines(True), want.splitlines(True), "doc", "pseudonym_ref.py print"))
        sys.exit("pseudonym_ref: %s's test vectors differ from what this implementation "
                 "makes" % doc)
    promises()
    print("pseudonym_ref: %d vectors match %s and keep the format's promises" %
          (len(VECTORS), doc))


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "print":
        sys.stdout.write(render())
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
