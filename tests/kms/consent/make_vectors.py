#!/usr/bin/python3
"""Regenerates tests/kms/consent/vectors/: a Consent Manager's RSA key and
a consent artefact signed by PyJWT (an independent JOSE implementation), as
docs/consent.md describes: a detached JWS (RFC 7515 appendix F) whose
payload is the exact bytes of the artefact's ConsentDetail value.

Run from anywhere: /usr/bin/python3 tests/kms/consent/make_vectors.py
(RS256 signatures are deterministic, so the artefact is the same each time
the same key is used; the key is made once and kept).
"""
import json
import os

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")
KID = "finvu-1"


def key(name):
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def jwk(k, kid):
    d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
    d["kid"] = kid
    return json.dumps(d, sort_keys=True)


# ConsentDetail as the signer wrote it: its own spacing and member order,
# which kmsd must verify byte for byte, never re-serialized.
DETAIL = """{
    "consentStart": "2026-12-01T10:00:00.000Z",
    "consentExpiry": "2027-12-01T10:00:00.000Z",
    "consentMode": "STORE",
    "fetchType": "PERIODIC",
    "consentTypes": ["TRANSACTIONS"],
    "fiTypes": ["DEPOSIT"],
    "DataConsumer": {"id": "fiu-1", "type": "FIU"},
    "Customer": {"id": "9999999999@finvu"},
    "Purpose": {"code": "101", "refUri": "https://api.rebit.org.in/aa/purpose/101.xml",
                "text": "Wealth management service", "Category": {"type": "string"}},
    "FIDataRange": {"from": "2025-01-01T00:00:00.000Z", "to": "2026-12-01T00:00:00.000Z"},
    "DataLife": {"unit": "MONTH", "value": 6},
    "Frequency": {"unit": "DAY", "value": 3}
  }"""


def artefact(k, kid, detail):
    token = jwt.api_jws.PyJWS().encode(detail.encode(), k, algorithm="RS256",
                                        headers={"kid": kid, "typ": None})
    head, _, sig = token.split(".")
    return ('{\n  "ver": "1.1.3",\n  "consentId": "654024c8-29c8-11e8-8868-0289437bf331",\n'
            '  "status": "ACTIVE",\n  "createTimestamp": "2026-12-01T10:00:00.000Z",\n'
            '  "ConsentDetail": ' + detail + ',\n'
            '  "consentDetailDigitalSignature": "' + head + '..' + sig + '"\n}\n')


def main():
    k = key("cm-rsa-private.pem")
    with open(os.path.join(HERE, "cm-rsa.jwk"), "w") as f:
        f.write(jwk(k, KID) + "\n")
    with open(os.path.join(HERE, "artefact-101.json"), "w") as f:
        f.write(artefact(k, KID, DETAIL))
    # The same artefact signed by another key under the same kid.
    other = key("other-rsa-private.pem")
    with open(os.path.join(HERE, "artefact-101-other-signer.json"), "w") as f:
        f.write(artefact(other, KID, DETAIL))


if __name__ == "__main__":
    main()
