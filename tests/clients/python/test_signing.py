#!/usr/bin/python3
"""python_signing: kms_client.py's request signing and credentials files,
with no kmsd: the test vector of docs/request-signing.md (read from the
page: the same request bytes and MAC from Python's protobuf), a credentials
file holding the vector's key, and the file checks (mode, symbolic link,
malformed text). Usage: test_signing.py DOC."""
import os
import re
import sys
import tempfile

import kms_pb2
from kms_client import CredentialsError, load_credentials, parse_credentials, sign_request

doc = sys.argv[1]
failures = 0
checks = 0


def check(name, ok, detail=""):
    global failures, checks
    checks += 1
    if ok:
        print("ok: " + name)
    else:
        failures += 1
        print("FAIL: %s %s" % (name, detail), file=sys.stderr)


# The vector: "name: value" lines of the ```text block under "## Test vector";
# a hex value may continue on indented lines.
text = open(doc).read()
block = re.search(r"## Test vector\n.*?```text\n(.*?)```", text, re.S).group(1)
vector = {}
last = None
for line in block.splitlines():
    if line.startswith(" ") and last:
        vector[last] += line.strip()
    elif ":" in line:
        last, value = (p.strip() for p in line.split(":", 1))
        vector[last] = value
for name in ("secret", "access_key_id", "request_id", "timestamp_unix", "mac", "request"):
    check("the vector has " + name, name in vector)
if failures:
    sys.exit(1)

req = kms_pb2.Request()
req.schema_version = 1
req.request_id = vector["request_id"]
req.encrypt.key_id = "alias/payments"
req.encrypt.plaintext = b"hello"
pair = req.encrypt.encryption_context.add()
pair.key, pair.value = "purpose", "billing"

with tempfile.TemporaryDirectory() as d:
    creds = os.path.join(d, "creds")
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, ("# kms credentials: principal doc-svc (keep this file secret)\n"
                  "principal = doc-svc\naccess_key_id = %s\nsecret = %s\n" %
                  (vector["access_key_id"], vector["secret"])).encode())
    os.close(fd)
    key_id, secret, principal = load_credentials(creds)
    check("the credentials file loads", key_id == vector["access_key_id"] and
          secret.hex() == vector["secret"] and principal == "doc-svc")

    sign_request(req, key_id, secret, int(vector["timestamp_unix"]))
    check("the MAC is the vector's", req.credential.mac.hex() == vector["mac"],
          req.credential.mac.hex())
    check("the packed request is the vector's", req.SerializeToString().hex() ==
          vector["request"], req.SerializeToString().hex())

    # The file checks, as libkmsclient's.
    for mode in (0o644, 0o640, 0o604):
        os.chmod(creds, mode)
        try:
            load_credentials(creds)
            check("mode %o refused" % mode, False)
        except CredentialsError as e:
            check("mode %o refused" % mode, "chmod 600 " + creds in str(e), str(e))
    os.chmod(creds, 0o600)
    link = os.path.join(d, "link")
    os.symlink(creds, link)
    try:
        load_credentials(link)
        check("a symbolic link refused", False)
    except CredentialsError as e:
        check("a symbolic link refused", "symbolic link" in str(e), str(e))

good = "access_key_id = %s\nsecret = %s\n" % (vector["access_key_id"], vector["secret"])
malformed = {
    "CRLF": good.replace("\n", "\r\n"),
    "duplicate": good + "secret = %s\n" % vector["secret"],
    "unknown key": good + "region = in-mum\n",
    "no secret": "access_key_id = %s\n" % vector["access_key_id"],
    "short secret": good.replace(vector["secret"], vector["secret"][:-2]),
    "uppercase secret": good.replace(vector["secret"], vector["secret"].upper()),
    "bad id": good.replace(vector["access_key_id"], "AK" + "1" * 20),
    "NUL": good + "\0",
    "over 4 KiB": "#" * 4097,
}
for name, bad in malformed.items():
    try:
        parse_credentials(bad.encode())
        check("refused: " + name, False)
    except CredentialsError as e:
        check("refused: " + name, vector["secret"][8:24] not in str(e), str(e))
check("no final newline is fine", parse_credentials(good.rstrip("\n").encode())[0] ==
      vector["access_key_id"])

print("python_signing: %d checks, %d failed" % (checks, failures))
sys.exit(1 if failures else 0)
