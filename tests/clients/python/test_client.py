#!/usr/bin/python3
"""python_client: kms_client.py (written from docs/protocol.md alone)
against a real kmsd on a throw-away SoftHSM token (run under
tests/support/with-token; kmsd's path in KMS_TEST_KMSD). Root only (it
plants a socket owned by another uid); exit 77 otherwise.

Health; CreateKey; Encrypt/Decrypt with a context (and a wrong context);
a full batch of 1000 x 4096 bytes whose reply is over nanomsg's default
1 MiB receive limit, and a batch with a failing item; NOT_FOUND; invalid
requests (request_id, U+0000, schema_version, no operation, limits); and
the socket owner check."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import kms_pb2
from kms_client import KMS_REPLY_MAX, KmsClient, KmsError

if os.getuid() != 0:
    print("python_client: needs root (it plants a socket owned by uid 65534): skipped")
    sys.exit(77)

token_dir = os.environ["KMS_TEST_TOKEN_DIR"]
kmsd_path = os.environ["KMS_TEST_KMSD"]
sock = os.path.join(token_dir, "py.sock")
endpoint = "ipc://" + sock
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


def status_name(resp):
    return kms_pb2.Status.Name(resp.status)


# In the sanitizer lane: full stacks, so that SoftHSM's own leaks match the
# suppressions (tests/support/harness.c does the same for the kmsd it starts).
asan = os.environ.get("ASAN_OPTIONS")
if asan and "fast_unwind_on_malloc" not in asan:
    os.environ["ASAN_OPTIONS"] = asan + ":fast_unwind_on_malloc=0"

config = os.path.join(token_dir, "py.ini")
with open(config, "w") as f:
    f.write("[kmsd]\nregion = in-mum\ndata_dir = %s/py-data\nworkers = 2\n\n"
            "[listen]\nurl = %s\n\n"
            "[hsm]\nmodule = %s\ntoken_label = %s\npin_file = %s\n\n"
            "[ipc_principals]\n%d = py-client\n"
            % (token_dir, endpoint, os.environ["KMS_TEST_MODULE"],
               os.environ["KMS_TEST_TOKEN_LABEL"], os.environ["KMS_TEST_PIN_FILE"], os.getuid()))
log_path = os.path.join(token_dir, "py-kmsd.log")
log = open(log_path, "w")
# The first principal, as an operator makes it (docs/authorization.md): on
# the fresh data dir, before kmsd starts; every request below is signed
# with its access key (kms_client.py's signing, checked by kmsd).
credentials = os.path.join(token_dir, "py-client.credentials")
if os.path.exists(credentials):
    os.unlink(credentials)
boot = subprocess.run([kmsd_path, "-c", config, "--bootstrap-admin", "py-client",
                       "--roles", "admin,app,auditor", "--credentials-out", credentials],
                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      timeout=60)
if boot.returncode != 0:
    print("python_client: kmsd --bootstrap-admin failed:\n" + boot.stdout.decode(errors="replace"),
          file=sys.stderr)
    sys.exit(1)
kmsd = subprocess.Popen([kmsd_path, "-c", config], stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT)


def kmsd_log():
    with open(log_path) as f:
        return f.read()


try:
    for _ in range(150):  # at most 15 s
        if "ready:" in kmsd_log() or kmsd.poll() is not None:
            break
        time.sleep(0.1)
    if "ready:" not in kmsd_log():
        print("python_client: kmsd did not start:\n" + kmsd_log(), file=sys.stderr)
        sys.exit(1)

    c = KmsClient(endpoint, timeout_ms=10000, credentials=credentials)

    # ---- Health ----
    r = c.call("health", kms_pb2.HealthRequest(), request_id="py.health-1")
    check("Health answers OK", r.status == kms_pb2.OK and r.WhichOneof("result") == "health",
          status_name(r))
    check("Health echoes the request id", r.request_id == "py.health-1", r.request_id)
    check("Health: schema_version 1", r.schema_version == 1)
    check("Health: HSM ok", r.health.hsm_ok, r.health.hsm_message)

    # ---- CreateKey ----
    # A policy letting py-client use the key (the default lets no one).
    policy = json.dumps({"Version": "2024-01-01", "Statement": [
        {"Sid": "py-client-all", "Effect": "Allow", "Principal": "py-client", "Action": "*"}]})
    r = c.call("create_key", kms_pb2.CreateKeyRequest(description="python client",
                                                      alias="alias/py-client", policy=policy))
    check("CreateKey OK", r.status == kms_pb2.OK, "%s %s" % (status_name(r), r.message))
    key_id = r.create_key.key_metadata.key_id
    check("CreateKey: a key id k- + 32 lowercase hex", re.fullmatch(r"k-[0-9a-f]{32}", key_id),
          key_id)
    check("CreateKey: the alias is on the key",
          "alias/py-client" in r.create_key.key_metadata.aliases)

    # ---- Encrypt / Decrypt with a context ----
    secret = b"4111 1111 1111 1111"
    enc = kms_pb2.EncryptRequest(key_id="alias/py-client", plaintext=secret)
    enc.encryption_context.add(key="purpose", value="card")
    enc.encryption_context.add(key="tenant", value="t-1")
    r = c.call("encrypt", enc)
    check("Encrypt OK", r.status == kms_pb2.OK, "%s %s" % (status_name(r), r.message))
    check("Encrypt names the key id and version 1",
          r.encrypt.key_id == key_id and r.encrypt.key_version == 1)
    blob = r.encrypt.ciphertext_blob
    dec = kms_pb2.DecryptRequest(ciphertext_blob=blob)
    dec.encryption_context.add(key="tenant", value="t-1")  # any order
    dec.encryption_context.add(key="purpose", value="card")
    r = c.call("decrypt", dec)
    check("Decrypt with the same context (other order) gives the plaintext",
          r.status == kms_pb2.OK and r.decrypt.plaintext == secret,
          "%s %s" % (status_name(r), r.message))
    dec = kms_pb2.DecryptRequest(ciphertext_blob=blob)
    dec.encryption_context.add(key="purpose", value="other")
    dec.encryption_context.add(key="tenant", value="t-1")
    r = c.call("decrypt", dec)
    check("Decrypt with a wrong context: INVALID_CIPHERTEXT, no result",
          r.status == kms_pb2.INVALID_CIPHERTEXT and r.WhichOneof("result") is None,
          status_name(r))

    # ---- a full batch: its reply is past nanomsg's default 1 MiB ----
    batch = kms_pb2.BatchEncryptRequest()
    for i in range(1000):  # KMS_BATCH_MAX
        item = batch.items.add(key_id=key_id, plaintext=bytes([i % 256]) * 4096)
        item.encryption_context.add(key="item", value=str(i))
    req = c.request("batch_encrypt", batch)
    raw = c.send_raw(req.SerializeToString())
    r = kms_pb2.Response()
    r.ParseFromString(raw)
    print("figure: a BatchEncrypt of 1000 x 4096 bytes: request %d bytes, reply %d bytes"
          % (req.ByteSize(), len(raw)))
    check("full BatchEncrypt OK, 1000 results, all OK",
          r.status == kms_pb2.OK and len(r.batch_encrypt.results) == 1000 and
          all(x.status == kms_pb2.OK for x in r.batch_encrypt.results), status_name(r))
    check("its reply is over 1 MiB and within KMS_REPLY_MAX",
          1 << 20 < len(raw) <= KMS_REPLY_MAX, str(len(raw)))
    bd = kms_pb2.BatchDecryptRequest()
    for i, res in enumerate(r.batch_encrypt.results):
        item = bd.items.add(ciphertext_blob=res.result.ciphertext_blob)
        item.encryption_context.add(key="item", value=str(i))
    r = c.call("batch_decrypt", bd)
    check("full BatchDecrypt gives every plaintext back, in order",
          r.status == kms_pb2.OK and len(r.batch_decrypt.results) == 1000 and
          all(x.status == kms_pb2.OK and x.result.plaintext == bytes([i % 256]) * 4096
              for i, x in enumerate(r.batch_decrypt.results)), status_name(r))
    mixed = kms_pb2.BatchEncryptRequest()
    mixed.items.add(key_id=key_id, plaintext=b"one")
    mixed.items.add(key_id="alias/py-no-such-key", plaintext=b"two")
    r = c.call("batch_encrypt", mixed)
    res = r.batch_encrypt.results
    check("a batch with a failing item: envelope OK, item 1 OK, item 2 NOT_FOUND",
          r.status == kms_pb2.OK and len(res) == 2 and res[0].status == kms_pb2.OK and
          res[1].status == kms_pb2.NOT_FOUND and res[1].message != "",
          "%s %s" % (status_name(r), [kms_pb2.Status.Name(x.status) for x in res]))

    # ---- an error status ----
    r = c.call("describe_key", kms_pb2.DescribeKeyRequest(key_id="k-" + "0" * 32))
    check("DescribeKey of an unknown key: NOT_FOUND, a message, no result",
          r.status == kms_pb2.NOT_FOUND and r.message and r.WhichOneof("result") is None,
          status_name(r))

    # ---- invalid requests ----
    # Sent unsigned (the ipc uid's mapped principal): a malformed request is
    # refused before a signature could be checked.
    u = KmsClient(endpoint, timeout_ms=10000)

    def invalid(name, req, echoed):
        r = u.send(req)
        check(name + ": INVALID_ARGUMENT, no result",
              r.status == kms_pb2.INVALID_ARGUMENT and r.WhichOneof("result") is None,
              "%s %s" % (status_name(r), r.message))
        check(name + ": request_id in the reply is %r" % echoed, r.request_id == echoed,
              repr(r.request_id))
        return r

    health = kms_pb2.HealthRequest()
    invalid("request_id with a space", c.request("health", health, "bad id"), "")
    invalid("request_id of 65 characters", c.request("health", health, "a" * 65), "")
    invalid("empty request_id", c.request("health", health, ""), "")
    invalid("request_id of 64 characters is valid, with schema_version 2",
            kms_pb2.Request(schema_version=2, request_id="b" * 64, health=health), "b" * 64)
    invalid("no operation", kms_pb2.Request(schema_version=1, request_id="py-noop"), "py-noop")
    r = invalid("U+0000 in a string field",
                c.request("describe_key", kms_pb2.DescribeKeyRequest(key_id="alias/a\0b"),
                          "py-nul"), "py-nul")
    check("U+0000: the message says so", "U+0000" in r.message, r.message)
    ctx_nul = kms_pb2.EncryptRequest(key_id=key_id, plaintext=b"x")
    ctx_nul.encryption_context.add(key="k", value="a\0b")
    invalid("U+0000 in a context value", c.request("encrypt", ctx_nul, "py-nul-ctx"), "py-nul-ctx")
    invalid("plaintext of 4097 bytes",
            c.request("encrypt", kms_pb2.EncryptRequest(key_id=key_id, plaintext=b"x" * 4097),
                      "py-big"), "py-big")
    many = kms_pb2.EncryptRequest(key_id=key_id, plaintext=b"x")
    for i in range(65):
        many.encryption_context.add(key="k%d" % i, value="v")
    invalid("65 context pairs", c.request("encrypt", many, "py-ctx65"), "py-ctx65")
    over = kms_pb2.BatchEncryptRequest()
    for i in range(1001):
        over.items.add(key_id=key_id, plaintext=b"x")
    invalid("a batch of 1001 items", c.request("batch_encrypt", over, "py-1001"), "py-1001")
    # A credential is verified on every transport: a malformed one is
    # refused, and the reply does not say which check failed.
    req = c.request("health", health, "py-cred")
    req.credential.access_key_id = "not-an-access-key"
    req.credential.mac = b"\x00" * 32
    r = u.send(req)
    check("a malformed credential: ACCESS_DENIED", r.status == kms_pb2.ACCESS_DENIED,
          status_name(r))
    check("a malformed credential: the reply does not say which check failed",
          "signature was not accepted" in r.message and "malformed" not in r.message,
          r.message)
    # ---- a ListKeys page is cut by bytes, not only by count ----
    # 230 keys of 50 full tags each (~20 KB of metadata a key) are more than
    # KMS_LIST_REPLY_BUDGET (4 MiB): limit 1000 must come back in pages.
    for k in range(230):
        ck = kms_pb2.CreateKeyRequest(description="tagged %d" % k)
        for t in range(50):
            ck.tags.add(key="%03d-%s" % (t, "k" * 124), value="v" * 256)
        r = c.call("create_key", ck)
        if r.status != kms_pb2.OK:
            check("CreateKey with 50 full tags", False, "%s %s" % (status_name(r), r.message))
            break
    seen, pages, token, biggest = [], 0, "", 0
    while pages < 20:  # bounded: 231 keys fit in far fewer pages
        req = c.request("list_keys", kms_pb2.ListKeysRequest(limit=1000, page_token=token))
        raw = c.send_raw(req.SerializeToString())
        r = kms_pb2.Response()
        r.ParseFromString(raw)
        if r.status != kms_pb2.OK:
            check("ListKeys OK", False, "%s %s" % (status_name(r), r.message))
            break
        pages += 1
        biggest = max(biggest, len(raw))
        seen += [k.key_id for k in r.list_keys.keys]
        token = r.list_keys.next_page_token
        if not token:
            break
    print("figure: ListKeys limit 1000 over 231 keys: %d pages, the largest reply %d bytes"
          % (pages, biggest))
    check("ListKeys limit 1000 over 231 keys comes in more than one page", pages > 1, str(pages))
    check("each page within 4 MiB of metadata and KMS_REPLY_MAX",
          biggest <= (4 << 20) + (64 << 10), str(biggest))
    check("the pages hold every key once", len(seen) == 231 and len(set(seen)) == 231,
          "%d keys, %d distinct" % (len(seen), len(set(seen))))

    r = c.call("health", health, "py.after-errors")
    check("the connection still serves after the refusals", r.status == kms_pb2.OK)
    c.close()

    # ---- the socket owner check ----
    with tempfile.TemporaryDirectory(dir=token_dir) as d:
        planted = os.path.join(d, "planted.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(planted)
        listener.listen(4)
        listener.setblocking(False)
        os.chown(planted, 65534, 65534)
        try:
            KmsClient("ipc://" + planted, timeout_ms=500)
            check("a socket owned by uid 65534 is refused", False, "the client connected")
        except KmsError as e:
            check("a socket owned by uid 65534 is refused before connecting",
                  "owned by uid 65534" in str(e), str(e))
        try:
            listener.accept()
            check("nothing connected to the planted socket", False)
        except BlockingIOError:
            check("nothing connected to the planted socket", True)
        listener.close()
        plain = os.path.join(d, "plain-file")
        open(plain, "w").close()
        try:
            KmsClient("ipc://" + plain, timeout_ms=500)
            check("a regular file is refused", False)
        except KmsError as e:
            check("a regular file at the path is refused", "not a socket" in str(e), str(e))
        try:
            KmsClient("ipc://" + sock, server_uid=65534, timeout_ms=500).close()
            check("kmsd's own socket (root's) passes the check", True)
        except KmsError as e:
            check("kmsd's own socket passes the check", False, str(e))
finally:
    if kmsd.poll() is None:
        kmsd.send_signal(signal.SIGTERM)
        try:
            rc = kmsd.wait(timeout=15)
            check("kmsd stopped on SIGTERM", rc == 0, "exit %d" % rc)
        except subprocess.TimeoutExpired:
            kmsd.kill()
            kmsd.wait()
            check("kmsd stopped on SIGTERM within 15 s", False)
    log.close()

if failures:
    print("%d of %d checks failed; kmsd's log:\n%s" % (failures, checks, kmsd_log()),
          file=sys.stderr)
    sys.exit(1)
print("all %d checks passed" % checks)
