"""kms.client: kms.Client, one libkmsclient client (kms_client_open)."""
import ctypes
import operator
import os

from . import _envelope
from ._buffers import INT_MAX, UINT32_MAX, CBuffer, CContext, c_int_in, c_text, copy_out, wipe
from ._lib import (SIGN_SECRET_LEN, Ciphertext, ClientOptions, DataKey as _CDataKey, Error,
                   Health as _CHealth, Plaintext, Reencrypted, lib)
from .errors import INVALID_ARGUMENT, ORIGIN_NAMES, InvalidArgument, error_for

_SIZE_MAX = ctypes.c_size_t(-1).value


def raise_for(status, err):
    """Raises the exception for a failed call's status and kms_error."""
    message = err.message.decode("utf-8", "replace")
    raise error_for(status, message, ORIGIN_NAMES.get(err.origin, "local"),
                    err.retry_after_ms)



class Encrypted(bytes):
    """A ciphertext blob (bytes) with key_id and key_version: the key
    version that sealed it."""

    def __new__(cls, blob, key_id, key_version):
        self = super().__new__(cls, blob)
        self.key_id = key_id
        self.key_version = key_version
        return self


class DataKey:
    """A data key from generate_data_key: plaintext (a bytearray of 32
    bytes, None from generate_data_key_without_plaintext), blob (bytes: the
    same key sealed under the KMS key; store it beside the data), key_id
    and key_version. wipe() zeroes the plaintext; a `with` block wipes it on
    exit."""

    __slots__ = ("plaintext", "blob", "key_id", "key_version")

    def __init__(self, plaintext, blob, key_id, key_version):
        self.plaintext = plaintext
        self.blob = blob
        self.key_id = key_id
        self.key_version = key_version

    def wipe(self):
        if self.plaintext is not None:
            wipe(self.plaintext)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.wipe()
        return False

    def __repr__(self):
        return "DataKey(key_id=%r, key_version=%d, plaintext=%s)" % (
            self.key_id, self.key_version, "None" if self.plaintext is None else "<hidden>")


class Health:
    """What kmsd's Health says (fields of kms_health)."""

    def __init__(self, h):
        text = lambda p: (p or b"").decode("utf-8", "replace")
        self.hsm_ok = bool(h.hsm_ok)
        self.region = text(h.region)
        self.version = text(h.version)
        self.uptime_seconds = h.uptime_seconds
        self.token_label = text(h.token_label)
        self.hsm_message = text(h.hsm_message)
        self.audit_size = h.audit_size
        self.principal = text(h.principal)

    def __repr__(self):
        return "Health(hsm_ok=%r, region=%r, version=%r, principal=%r)" % (
            self.hsm_ok, self.region, self.version, self.principal)


def _endpoints(endpoint):
    if endpoint is None:
        env = os.environ.get("KMS_ENDPOINT", "")
        endpoint = [e.strip() for e in env.split(",") if e.strip()]
    elif isinstance(endpoint, (str, bytes, os.PathLike)):
        endpoint = [endpoint]
    return [c_text(e, "endpoint") for e in endpoint]


class Client:
    """A client of kmsd (libkmsclient's kms_client).

        with kms.Client(endpoint="ipc:///run/kms/kms.sock") as c:
            blob = c.encrypt("alias/app", b"secret", context={"purpose": "x"})
            assert c.decrypt(blob, context={"purpose": "x"}) == b"secret"

    endpoint: a URL or a list of them (ipc://PATH, tls+tcp://HOST:PORT);
    None: $KMS_ENDPOINT (comma-separated), else ipc:///run/kms/kms.sock.
    credentials: a credentials file (docs/request-signing.md) to sign every
    request with; None: $KMS_CREDENTIALS unless no_env_credentials, else
    unsigned. access_key: (access_key_id, secret) instead of a file; the
    library keeps its own copy of the secret in locked memory, the package
    wipes its copy, the caller's object is the caller's to wipe.
    Every call blocks until kmsd answers or timeout_ms passes; one Client
    may be shared by threads (ctypes releases the GIL during calls). Close
    it (or leave its `with` block) once no call is running.
    """

    def __init__(self, endpoint=None, credentials=None, *, access_key=None, timeout_ms=0,
                 tls_ca_file=None, tls_cert_file=None, tls_key_file=None,
                 tls_server_name=None, insecure_plain_tcp=False, no_env_credentials=False,
                 server_uid=0, resend_ms=0):
        self._handle = None
        urls = _endpoints(endpoint)
        arr = (ctypes.c_char_p * len(urls))(*urls) if urls else None
        opts = ClientOptions()
        opts.endpoints = arr
        opts.n_endpoints = len(urls)
        opts.timeout_ms = c_int_in(timeout_ms, 0, INT_MAX, "timeout_ms")
        opts.resend_ms = c_int_in(resend_ms, 0, INT_MAX, "resend_ms")
        opts.tls_ca_file = c_text(tls_ca_file, "tls_ca_file")
        opts.tls_cert_file = c_text(tls_cert_file, "tls_cert_file")
        opts.tls_key_file = c_text(tls_key_file, "tls_key_file")
        opts.tls_server_name = c_text(tls_server_name, "tls_server_name")
        opts.insecure_plain_tcp = insecure_plain_tcp
        opts.credentials_file = c_text(credentials, "credentials")
        opts.no_env_credentials = no_env_credentials
        opts.server_uid = c_int_in(server_uid, 0, UINT32_MAX, "server_uid")
        secret = None
        try:
            if access_key is not None:
                key_id, key_secret = access_key
                secret = bytearray(memoryview(key_secret).cast("B"))
                if len(secret) != SIGN_SECRET_LEN:
                    raise InvalidArgument(INVALID_ARGUMENT, "access_key: the secret must be "
                                          "%d bytes" % SIGN_SECRET_LEN)
                opts.access_key_id = c_text(key_id, "access_key id")
                opts.access_key_secret = ctypes.cast(CBuffer(secret).ptr,
                                                     ctypes.POINTER(ctypes.c_uint8))
            handle = ctypes.c_void_p()
            err = Error()
            rc = lib.kms_client_open(ctypes.byref(opts), ctypes.byref(handle), ctypes.byref(err))
            if rc != 0:
                raise_for(rc, err)
            self._handle = handle
        finally:
            opts.access_key_secret = None
            if secret is not None:
                wipe(secret)

    # ---- lifetime ----

    @property
    def closed(self):
        return self._handle is None

    def close(self):
        """Closes the connection and wipes the library's copy of the access
        key. Closing twice is fine."""
        handle, self._handle = self._handle, None
        if handle is not None:
            lib.kms_client_close(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self.close()

    def __repr__(self):
        return "<kms.Client %s>" % ("closed" if self.closed else "open")

    def _h(self):
        if self._handle is None:
            raise ValueError("kms.Client is closed")
        return self._handle

    # ---- data plane ----

    def encrypt(self, key_id, plaintext, context=None):
        """Seals 1..4096 bytes under key_id (an id or an alias) and the
        encryption context (a dict of str to str); returns the blob (bytes,
        with .key_id and .key_version)."""
        pt = CBuffer(plaintext, "plaintext")
        ctx = CContext(context)
        out, err = Ciphertext(), Error()
        rc = lib.kms_encrypt(self._h(), c_text(key_id, "key_id"), pt.ptr, pt.length, ctx.ptr,
                             ctx.n, ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            return Encrypted(copy_out(out.blob, out.blob_len), out.key_id.decode(),
                             out.key_version)
        finally:
            lib.kms_ciphertext_free(ctypes.byref(out))

    def decrypt(self, blob, context=None, key_id=None, mutable=False):
        """Opens a blob under exactly the context it was sealed with
        (InvalidCiphertext otherwise). key_id: when set, the blob must be
        under that key. Returns bytes, or a bytearray the caller can wipe
        (kms.wipe) when mutable."""
        b = CBuffer(blob, "blob")
        ctx = CContext(context)
        out, err = Plaintext(), Error()
        rc = lib.kms_decrypt(self._h(), b.ptr, b.length, ctx.ptr, ctx.n,
                             c_text(key_id, "key_id"), ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            return copy_out(out.bytes, out.len, mutable)
        finally:
            lib.kms_plaintext_free(ctypes.byref(out))

    def re_encrypt(self, blob, source_context=None, destination_key_id=None,
                   destination_context=None):
        """Re-seals a blob under destination_key_id (None: the source key's
        primary version) and destination_context; the plaintext stays in
        kmsd. Returns the new blob (bytes with .key_id, .key_version)."""
        b = CBuffer(blob, "blob")
        src, dst = CContext(source_context), CContext(destination_context, "destination_context")
        out, err = Reencrypted(), Error()
        rc = lib.kms_re_encrypt(self._h(), b.ptr, b.length, src.ptr, src.n,
                                c_text(destination_key_id, "destination_key_id"), dst.ptr,
                                dst.n, ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            ct = out.ciphertext
            return Encrypted(copy_out(ct.blob, ct.blob_len), ct.key_id.decode(), ct.key_version)
        finally:
            lib.kms_reencrypted_free(ctypes.byref(out))

    def generate_data_key(self, key_id, context=None, with_plaintext=True):
        """A fresh AES-256 data key (kms.DataKey): its 32-byte plaintext in
        a bytearray (wipe it when done, or use `with`) and its blob sealed
        under key_id and the context. with_plaintext=False: the blob only."""
        f = (lib.kms_generate_data_key if with_plaintext
             else lib.kms_generate_data_key_without_plaintext)
        ctx = CContext(context)
        out, err = _CDataKey(), Error()
        rc = f(self._h(), c_text(key_id, "key_id"), ctx.ptr, ctx.n, ctypes.byref(out),
               ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            plaintext = (copy_out(out.plaintext, out.plaintext_len, True)
                         if out.plaintext else None)
            return DataKey(plaintext, copy_out(out.blob, out.blob_len), out.key_id.decode(),
                           out.key_version)
        finally:
            lib.kms_data_key_free(ctypes.byref(out))

    def generate_data_key_without_plaintext(self, key_id, context=None):
        """generate_data_key(..., with_plaintext=False)."""
        return self.generate_data_key(key_id, context, with_plaintext=False)

    def generate_random(self, n, mutable=False):
        """n (1..1024) random bytes from kmsd's HSM."""
        n = operator.index(n)
        # ctypes would wrap a negative n, or one past size_t, into range.
        if n < 0 or n > _SIZE_MAX:
            raise InvalidArgument(INVALID_ARGUMENT, "generate_random: %d bytes; it gives 1..1024"
                                  % n)
        out, err = ctypes.c_void_p(), Error()
        rc = lib.kms_generate_random(self._h(), n, ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            return copy_out(out, n, mutable)
        finally:
            lib.kms_secure_free(out)

    def health(self):
        """kmsd's Health (kms.client.Health)."""
        out, err = _CHealth(), Error()
        rc = lib.kms_health_check(self._h(), ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        try:
            return Health(out)
        finally:
            lib.kms_health_free(ctypes.byref(out))

    # ---- envelope encryption (docs/envelope-format.md) ----

    def envelope_encrypt(self, key_id, plaintext, context=None, segment_size=0):
        """Seals plaintext of any size locally under a fresh data key from
        key_id; returns the envelope message (bytes)."""
        return _envelope.encrypt_buffer(self._h(), key_id, plaintext, context, segment_size)

    def envelope_decrypt(self, message, context=None, key_id=None, mutable=False):
        """Opens an envelope message whose context must be exactly context
        (InvalidArgument before anything is sent otherwise); nothing is
        returned unless the whole message verified."""
        return _envelope.decrypt_buffer(self._h(), message, context, key_id, mutable)

    def envelope_encrypt_stream(self, key_id, src, dst, context=None, segment_size=0,
                                chunk_size=_envelope.CHUNK):
        """Reads src (a binary file object: readinto or read) to its end and
        writes the envelope message to dst (write) as it goes, in constant
        memory. Returns kms.EnvelopeInfo (key_id, key_version)."""
        return _envelope.encrypt_stream(self._h(), key_id, src, dst, context, segment_size,
                                        chunk_size)

    def envelope_decrypt_stream(self, src, dst, context=None, key_id=None,
                                chunk_size=_envelope.CHUNK):
        """Reads an envelope message from src and writes each segment's
        plaintext to dst once it verified. On failure the exception's
        .released says how many plaintext bytes dst already got: treat them
        as invalid (delete the output). Returns kms.EnvelopeInfo."""
        return _envelope.decrypt_stream(self._h(), src, dst, context, key_id, chunk_size)

    def envelope_encrypt_file(self, key_id, src_path, dst_path, context=None, segment_size=0):
        """envelope_encrypt_stream from file src_path into dst_path, written
        beside it under a temporary name and renamed only on success."""
        return _envelope.file_op(
            dst_path, src_path,
            lambda s, d: self.envelope_encrypt_stream(key_id, s, d, context, segment_size))

    def envelope_decrypt_file(self, src_path, dst_path, context=None, key_id=None):
        """envelope_decrypt_stream from file src_path into dst_path: the
        plaintext appears at dst_path only when the whole message verified
        (a temporary file beside it, removed on failure)."""
        return _envelope.file_op(
            dst_path, src_path,
            lambda s, d: self.envelope_decrypt_stream(s, d, context, key_id))
