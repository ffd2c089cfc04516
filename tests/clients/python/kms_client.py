"""kms_client: a small kms client in Python, written from docs/protocol.md
alone: Debian's python3-protobuf for the messages (kms_pb2, generated from
proto/kms.proto by protoc at build time) and libnanomsg through ctypes for
the REQ socket over ipc://.

    c = KmsClient("ipc:///run/kms/kms.sock", server_uid=kms_uid)
    resp = c.call("health", kms_pb2.HealthRequest())
    c.close()
"""
import ctypes
import ctypes.util
import itertools
import os
import stat

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


class KmsClient:
    def __init__(self, endpoint, server_uid=None, timeout_ms=5000, recv_max=KMS_REPLY_MAX):
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
        resp = kms_pb2.Response()
        resp.ParseFromString(self.send_raw(req.SerializeToString()))
        return resp

    def call(self, op, message, request_id=None):
        return self.send(self.request(op, message, request_id))

    def close(self):
        _nn.nn_close(self._s)
