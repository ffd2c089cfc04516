"""kms_client: a small kms client in Python, written from docs/protocol.md
alone: Debian's python3-protobuf for the messages (kms_pb2, generated from
proto/kms.proto by protoc at build time) and libnanomsg through ctypes for
the REQ socket over ipc://.

    c = KmsClient("ipc:///run/kms/kms.sock", server_uid=kms_uid)
    resp = c.call("health", kms_pb2.HealthRequest())
    c.close()

With credentials=PATH (a credentials file, docs/request-signing.md) every
request is signed as that page says; load_credentials and sign_request are
usable on their own.
"""
import ctypes
import ctypes.util
import hashlib
import hmac
import itertools
import os
import re
import stat
import time

import kms_pb2

# nanomsg's constants (nanomsg/nn.h, nanomsg/reqrep.h).
AF_SP = 1
NN_REQ = 3 * 16 + 0
NN_SOL_SOCKET = 0
NN_LINGER = 1
NN_SNDTIMEO = 4
NN_RCVTIMEO = 5
NN_RCVMAXSIZE = 16
NN_REQ_RESEND_IVL = 1
NN_MSG = ctypes.c_size_t(-1).value

# docs/protocol.md, section 8: the largest reply kmsd sends.
KMS_REPLY_MAX = 8 * 1024 * 1024 + 64 * 1024
SCHEMA_VERSION = 1


class KmsError(Exception):
    """A transport failure or a refused endpoint: no reply was had."""


def _nanomsg():
    lib = ctypes.CDLL(ctypes.util.find_library("nanomsg") or "libnanomsg.so.5", use_errno=True)
    lib.nn_socket.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.nn_setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_size_t]
    lib.nn_connect.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.nn_send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.nn_freemsg.argtypes = [ctypes.c_void_p]
    lib.nn_close.argtypes = [ctypes.c_int]
    lib.nn_errno.restype = ctypes.c_int
    lib.nn_strerror.argtypes = [ctypes.c_int]
    lib.nn_strerror.restype = ctypes.c_char_p
    return lib


_nn = _nanomsg()


def _nn_error(what):
    return KmsError("%s: %s" % (what, _nn.nn_strerror(_nn.nn_errno()).decode()))


def check_socket_owner(path, server_uid=None):
    """docs/protocol.md, "Check who listens before you send": the path must
    be a socket owned by root, this process's uid or the configured server
    uid. Raises KmsError naming the owner otherwise."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise KmsError("%s: %s: is kmsd running?" % (path, e.strerror)) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise KmsError("%s is not a socket: refusing to send to it" % path)
    allowed = {0, os.getuid()}
    if server_uid is not None:
        allowed.add(server_uid)
    if st.st_uid not in allowed:
        raise KmsError("%s is owned by uid %d, not root, this uid or kmsd's: refusing to send "
                       "to it" % (path, st.st_uid))


# docs/request-signing.md, "Credentials file".
CREDENTIALS_FILE_MAX = 4096
_ACCESS_KEY_ID = re.compile(r"AK[A-Z2-7]{20}")
_PRINCIPAL = re.compile(r"[A-Za-z0-9._-]{1,63}")
_SECRET = re.compile(r"[0-9a-f]{64}")


class CredentialsError(KmsError):
    """A credentials file that cannot be used; the message never holds its bytes."""


def parse_credentials(text, name="(text)"):
    """The bytes of a credentials file -> (access_key_id, secret, principal)."""
    def bad(what):
        return CredentialsError("credentials file %s%s" % (name, what))
    if len(text) > CREDENTIALS_FILE_MAX:
        raise bad(" is larger than %d bytes" % CREDENTIALS_FILE_MAX)
    if b"\0" in text:
        raise bad(" holds a NUL byte")
    values = {}
    for number, line in enumerate(text.split(b"\n"), 1):
        if b"\r" in line:
            raise bad(": line %d ends with CR (DOS line ends)" % number)
        line = line.strip(b" \t")
        if not line or line.startswith(b"#"):
            continue
        if any(c < 0x20 and c != 0x09 or c >= 0x7f for c in line):
            raise bad(": line %d holds a control or non-ASCII byte" % number)
        if b"=" not in line:
            raise bad(": line %d is not \"key = value\"" % number)
        key, value = (part.strip(b" \t").decode() for part in line.split(b"=", 1))
        if key not in ("principal", "access_key_id", "secret"):
            raise bad(": line %d has an unknown key" % number)
        if key in values:
            raise bad(": line %d gives %s again" % (number, key))
        pattern = {"principal": _PRINCIPAL, "access_key_id": _ACCESS_KEY_ID,
                   "secret": _SECRET}[key]
        if not pattern.fullmatch(value):
            raise bad(": line %d: %s is malformed" % (number, key))
        values[key] = value
    for key in ("access_key_id", "secret"):
        if key not in values:
            raise bad(" has no %s line" % key)
    return values["access_key_id"], bytes.fromhex(values["secret"]), values.get("principal", "")


def load_credentials(path):
    """Reads a credentials file as libkmsclient does: no symbolic link, a
    regular file owned by this uid or root, no group or other bits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == 40:  # ELOOP
            raise CredentialsError("credentials file %s is a symbolic link; name the file "
                                   "itself" % path) from None
        raise CredentialsError("credentials file %s: %s" % (path, e.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError("credentials file %s is not a regular file" % path)
        if st.st_uid not in (0, os.geteuid()):
            raise CredentialsError("credentials file %s belongs to uid %d; chown it" %
                                   (path, st.st_uid))
        if st.st_mode & 0o077:
            raise CredentialsError("credentials file %s is open to group or others (mode "
                                   "%04o); chmod 600 %s" % (path, st.st_mode & 0o7777, path))
        text = os.read(fd, CREDENTIALS_FILE_MAX + 1)
    finally:
        os.close(fd)
    return parse_credentials(text, path)


def canonical_string(request_id, timestamp_unix, operation, op_bytes):
    """docs/request-signing.md, "The canonical string"."""
    return "\n".join(["KMS-HMAC-SHA256", request_id, str(timestamp_unix), operation,
                      hashlib.sha256(op_bytes).hexdigest()]).encode()


def sign_request(req, access_key_id, secret, timestamp_unix=None):
    """Sets req.credential: the MAC over the operation's bytes as they will
    sit in the packed request (the op message serialized on its own)."""
    op = req.WhichOneof("op")
    if op is None:
        raise KmsError("a request without an operation cannot be signed")
    ts = int(time.time()) if timestamp_unix is None else timestamp_unix
    mac = hmac.new(secret, canonical_string(req.request_id, ts, op,
                                            getattr(req, op).SerializeToString()),
                   hashlib.sha256).digest()
    req.credential.access_key_id = access_key_id
    req.credential.timestamp_unix = ts
    req.credential.mac = mac
    return req


class KmsClient:
    def __init__(self, endpoint, server_uid=None, timeout_ms=5000, recv_max=KMS_REPLY_MAX,
                 credentials=None):
        self._key = load_credentials(credentials) if credentials else None
        if not endpoint.startswith("ipc://"):
            raise KmsError("%s: this client speaks ipc:// only (nanomsg has no TLS)" % endpoint)
        check_socket_owner(endpoint[len("ipc://"):], server_uid)
        self._ids = itertools.count(1)
        self._s = _nn.nn_socket(AF_SP, NN_REQ)
        if self._s < 0:
            raise _nn_error("nn_socket")
        try:
            self._opt(NN_SOL_SOCKET, NN_RCVMAXSIZE, recv_max)
            self._opt(NN_SOL_SOCKET, NN_RCVTIMEO, timeout_ms)
            self._opt(NN_SOL_SOCKET, NN_SNDTIMEO, timeout_ms)
            self._opt(NN_SOL_SOCKET, NN_LINGER, 0)
            # Never resend on our own: a resent request would run twice.
            self._opt(NN_REQ, NN_REQ_RESEND_IVL, 3600 * 1000)
            if _nn.nn_connect(self._s, endpoint.encode()) < 0:
                raise _nn_error("nn_connect " + endpoint)
        except Exception:
            _nn.nn_close(self._s)
            raise

    def _opt(self, level, option, value):
        v = ctypes.c_int(value)
        if _nn.nn_setsockopt(self._s, level, option, ctypes.byref(v), ctypes.sizeof(v)) < 0:
            raise _nn_error("nn_setsockopt %d" % option)

    def send_raw(self, data):
        """Sends packed bytes, returns the packed reply (KmsError on none)."""
        buf = ctypes.create_string_buffer(data, len(data))
        if _nn.nn_send(self._s, buf, len(data), 0) < 0:
            raise _nn_error("nn_send")
        msg = ctypes.c_void_p()
        n = _nn.nn_recv(self._s, ctypes.byref(msg), NN_MSG, 0)
        if n < 0:
            raise _nn_error("no reply (nn_recv)")
        try:
            return ctypes.string_at(msg, n)
        finally:
            _nn.nn_freemsg(msg)

    def request(self, op, message, request_id=None):
        """A Request with `op` (the oneof field's name) set to message."""
        req = kms_pb2.Request()
        req.schema_version = SCHEMA_VERSION
        req.request_id = request_id if request_id is not None else "py-%d" % next(self._ids)
        getattr(req, op).CopyFrom(message)
        return req

    def send(self, req):
        if self._key and not req.HasField("credential"):
            sign_request(req, self._key[0], self._key[1])
        resp = kms_pb2.Response()
        resp.ParseFromString(self.send_raw(req.SerializeToString()))
        return resp

    def call(self, op, message, request_id=None):
        return self.send(self.request(op, message, request_id))

    def close(self):
        _nn.nn_close(self._s)
