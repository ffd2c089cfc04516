#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_audit_entries (corpus/audit_entries).

  make_audit_entries_seeds.py OUT_DIR

A seed is a flags byte (bit 0 --json, bit 1 --principal from the second
entry) and entries, each a u16 BE length and its bytes: entries of the forms
docs/audit-log.md shows, and ones a client's strings make hostile (control
characters and escapes in names, non-objects, duplicate members).
"""
import json
import os
import struct
import sys

# The members the readers look at (docs/audit-log.md has the whole entry);
# short, because the replay test feeds every prefix and byte flip.
BASE = {
    "time": "2026-11-28T00:22:44.512345Z", "principal": "app", "operation": "encrypt",
    "key_id": "k-6d62", "encryption_context": {"purpose": "card"}, "status": "OK",
}


def entry(**over):
    e = dict(BASE)
    e.update(over)
    return json.dumps(e, separators=(",", ":")).encode()


def seed(flags, *entries):
    out = bytes([flags])
    for e in entries:
        out += struct.pack(">H", len(e)) + e
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    denied = entry(status="ACCESS_DENIED", authz={"decision": "deny", "reason": "no grant"})
    consent = entry(operation="consent_check", data_principal="dp-7",
                    consent={"dp": "dp-7", "purpose": "marketing", "decision": "allow"})
    batch = entry(operation="batch_decrypt", batch_keys=["k-1", "k-2"],
                  items=[[0, "OK", {"dp": "dp-1", "purpose": "p"}], [1, "OK", None]])
    hostile = entry(key_id="k-\u001b[31mred", data_principal="dp\r\nfake line",
                    encryption_context={"dp": "\u0007bell", "purpose": "\u009bcsi"})
    seeds = {
        "one-entry-text": seed(0, entry()),
        "one-entry-json": seed(1, entry()),
        "denied-and-consent": seed(1, entry(), denied, consent),
        "batch": seed(0, batch, entry(time="2026-11-28T00:22:45Z")),
        "hostile-names-text": seed(0, hostile, entry()),
        "hostile-names-json": seed(1, hostile),
        "principal-from-entry": seed(2, entry(), entry(principal="ops\u001b]0;title\u0007")),
        "not-an-object": seed(0, entry(), b"[1,2,3]"),
        "not-json": seed(1, b"not json at all\x1b[2J"),
        "duplicate-member": seed(0, b'{"principal":"app","principal":"other"}'),
        "no-entries": seed(1),
        "odd-types": seed(0, entry(time=5, principal=None, items="x", batch_keys={"a": 1})),
        # `audit tail` wrote a DEL of an entry raw (jansson escapes every
        # other control character): now written \u007f.
        "regress-del-in-entry": seed(0, b'{"principal":"app","key_id":"k\x7f"}'),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
