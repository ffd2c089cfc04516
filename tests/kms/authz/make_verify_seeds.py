#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_authz_verify (corpus/verify).

  make_verify_seeds.py OUT_DIR

Each seed is a flags byte and a kms.Request packed by hand (protobuf wire
format). Seeds with flags bit 0 carry a zero MAC: the target signs them in
place with the named access key's secret, so they reach the checks after
the MAC (skew by flags bits 1-2, replay, revoked and disabled keys).
"""
import os
import struct
import sys

ACTIVE = b"AKAAAAAAAAAAAAAAAAAAAA"
REVOKED = b"AKBBBBBBBBBBBBBBBBBBBB"
DISABLED = b"AKCCCCCCCCCCCCCCCCCCCC"
TS = 1700000000


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def credential(key_id, ts=TS, mac=bytes(32)):
    return field(1, 2, key_id) + field(2, 0, ts) + field(3, 2, mac)


def encrypt(key_id=b"alias/payments", plaintext=b"attack at dawn", ctx=()):
    out = field(1, 2, key_id) + field(2, 2, plaintext)
    for k, v in ctx:
        out += field(3, 2, field(1, 2, k) + field(2, 2, v))
    return out


def request(rid=b"req-1", cred=None, op_num=10, op=None, schema=1):
    out = field(1, 0, schema) + field(2, 2, rid)
    if cred is not None:
        out += field(3, 2, cred)
    if op is not None:
        out += field(op_num, 2, op)
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    enc = encrypt()
    seeds = {
        "signed-encrypt": (1, request(cred=credential(ACTIVE), op=enc)),
        "signed-encrypt-context": (1, request(cred=credential(ACTIVE),
                                              op=encrypt(ctx=[(b"tenant", b"acme")]))),
        "signed-decrypt": (1, request(cred=credential(ACTIVE), op_num=11,
                                      op=field(1, 2, bytes(80)))),
        "clock-300-ahead": (1 | 2, request(cred=credential(ACTIVE), op=enc)),
        "clock-301-behind": (1 | 4, request(cred=credential(ACTIVE), op=enc)),
        "clock-a-day-ahead": (1 | 6, request(cred=credential(ACTIVE), op=enc)),
        "revoked-key": (1, request(cred=credential(REVOKED), op=enc)),
        "disabled-principal": (1, request(cred=credential(DISABLED), op=enc)),
        "unknown-key": (1, request(cred=credential(b"AKDDDDDDDDDDDDDDDDDDDD"), op=enc)),
        "bad-mac": (0, request(cred=credential(ACTIVE), op=enc)),
        "mac-31-bytes": (1, request(cred=credential(ACTIVE, mac=bytes(31)), op=enc)),
        "no-credential": (0, request(op=enc)),
        "no-op": (1, request(cred=credential(ACTIVE))),
        "bad-request-id": (1, request(rid=b"a b", cred=credential(ACTIVE), op=enc)),
        "op-twice": (1, request(cred=credential(ACTIVE), op=enc)
                     + field(10, 2, field(2, 2, b"other"))),
        "two-ops": (1, request(cred=credential(ACTIVE), op=enc)
                    + field(11, 2, field(1, 2, bytes(60)))),
        "credential-after-op": (1, field(1, 0, 1) + field(2, 2, b"req-2") + field(10, 2, enc)
                                + field(3, 2, credential(ACTIVE))),
        "negative-timestamp": (1, request(cred=credential(ACTIVE, ts=-1), op=enc)),
    }
    for name, (flags, body) in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([flags]) + body)


if __name__ == "__main__":
    main()
