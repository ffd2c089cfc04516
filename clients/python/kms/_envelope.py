"""kms._envelope: libkmsclient's envelope encryption (include/kms/envelope.h)
for whole buffers, streams and files."""
import ctypes
import errno
import os
import tempfile

from ._buffers import UINT32_MAX, CBuffer, CContext, c_int_in, c_text, copy_out, wipe
from ._lib import EnvelopeDecryptOptions, EnvelopeEncryptOptions, Error, WriteFn, lib

CHUNK = 65536


class EnvelopeInfo:
    """What sealed or opened an envelope message: key_id, key_version."""

    __slots__ = ("key_id", "key_version")

    def __init__(self, key_id, key_version):
        self.key_id = key_id
        self.key_version = key_version

    def __repr__(self):
        return "EnvelopeInfo(key_id=%r, key_version=%d)" % (self.key_id, self.key_version)


def _raise(status, err, failed_write=None, released=None):
    from .client import raise_for
    if failed_write is not None:
        if released is not None:
            failed_write.released = released
        raise failed_write
    try:
        raise_for(status, err)
    except Exception as e:
        if released is not None:
            e.released = released
        raise


def encrypt_buffer(handle, key_id, plaintext, context, segment_size):
    pt = CBuffer(plaintext, "plaintext")
    ctx = CContext(context)
    opts = EnvelopeEncryptOptions(segment_size=c_int_in(segment_size, 0, UINT32_MAX,
                                                           "segment_size"))
    out, n, err = ctypes.c_void_p(), ctypes.c_size_t(), Error()
    rc = lib.kms_envelope_encrypt_buffer(handle, c_text(key_id, "key_id"), ctx.ptr, ctx.n,
                                         ctypes.byref(opts), pt.ptr, pt.length,
                                         ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
    if rc != 0:
        _raise(rc, err)
    try:
        return copy_out(out, n.value)
    finally:
        lib.kms_free(out)


def _decrypt_options(context, key_id):
    ctx = CContext(context)
    opts = EnvelopeDecryptOptions(key_id=c_text(key_id, "key_id"), require_context=True,
                                  n_context=ctx.n)
    if ctx.n:
        opts.context = ctx.ptr
    return opts, ctx


def decrypt_buffer(handle, message, context, key_id, mutable):
    msg = CBuffer(message, "message")
    opts, ctx = _decrypt_options(context, key_id)
    out, n, err = ctypes.c_void_p(), ctypes.c_size_t(), Error()
    rc = lib.kms_envelope_decrypt_buffer(handle, ctypes.byref(opts), msg.ptr, msg.length,
                                         ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
    if rc != 0:
        _raise(rc, err)
    try:
        return copy_out(out, n.value, mutable)
    finally:
        lib.kms_secure_free(out)


class _Writer:
    """The C write function over a Python binary file object. Each run of
    bytes is handed to dst.write as a memoryview over the library's memory,
    released right after (so a plaintext is not copied into a Python bytes
    here; dst must not keep the view). The first exception is kept for the
    caller to raise; the library sees its errno."""

    def __init__(self, dst):
        self.dst = dst
        self.failure = None
        self.fn = WriteFn(self._write)

    def _write(self, arg, ptr, n):
        if self.failure is not None:
            return errno.EIO
        try:
            view = memoryview((ctypes.c_char * n).from_address(ptr)).cast("B")
            try:
                done = 0
                while done < n:
                    with view[done:] as part:
                        wrote = self.dst.write(part)
                    done = n if wrote is None else done + wrote
                    if wrote == 0:
                        raise OSError(errno.EIO, "the output accepted no bytes")
            finally:
                view.release()
            return 0
        except BaseException as e:  # kept and raised by the caller, even KeyboardInterrupt
            self.failure = e
            return e.errno if isinstance(e, OSError) and e.errno else errno.EIO


def _chunks(src, size, buf):
    """Yields memoryviews over buf with the next bytes of src until its end.
    readinto when src has it (no copy), else read."""
    view = memoryview(buf)
    try:
        while True:
            if hasattr(src, "readinto"):
                n = src.readinto(view)
                data = view[:n] if n else None
            else:
                data = src.read(size)
                n = len(data) if data else 0
            if not n:
                return
            yield data
    finally:
        view.release()


def _feed(update, obj, src, chunk_size, secret):
    """Calls update(obj, ptr, len, err) for each chunk of src; the status
    of the first failure (0 when none) and its kms_error."""
    buf = bytearray(chunk_size)
    err = Error()
    try:
        for data in _chunks(src, chunk_size, buf):
            cb = CBuffer(data)
            rc = update(obj, cb.ptr, cb.length, ctypes.byref(err))
            del cb
            if isinstance(data, memoryview):
                data.release()
            if rc != 0:
                return rc, err
        return 0, err
    finally:
        if secret:
            wipe(buf)


def encrypt_stream(handle, key_id, src, dst, context, segment_size, chunk_size):
    ctx = CContext(context)
    opts = EnvelopeEncryptOptions(segment_size=c_int_in(segment_size, 0, UINT32_MAX,
                                                           "segment_size"))
    w = _Writer(dst)
    enc, err = ctypes.c_void_p(), Error()
    rc = lib.kms_envelope_encrypt_init(handle, c_text(key_id, "key_id"), ctx.ptr, ctx.n,
                                       ctypes.byref(opts), w.fn, None, ctypes.byref(enc),
                                       ctypes.byref(err))
    if rc != 0:
        _raise(rc, err, w.failure)
    try:
        rc, err = _feed(lib.kms_envelope_encrypt_update, enc, src, chunk_size, True)
        if rc == 0:
            rc = lib.kms_envelope_encrypt_final(enc, ctypes.byref(err))
        if rc != 0:
            _raise(rc, err, w.failure)
        return EnvelopeInfo(lib.kms_envelope_encryptor_key_id(enc).decode(),
                            lib.kms_envelope_encryptor_key_version(enc))
    finally:
        lib.kms_envelope_encryptor_free(enc)


def decrypt_stream(handle, src, dst, context, key_id, chunk_size):
    opts, ctx = _decrypt_options(context, key_id)
    w = _Writer(dst)
    dec, err = ctypes.c_void_p(), Error()
    rc = lib.kms_envelope_decrypt_init(handle, ctypes.byref(opts), w.fn, None,
                                       ctypes.byref(dec), ctypes.byref(err))
    if rc != 0:
        _raise(rc, err, w.failure, 0)
    try:
        rc, err = _feed(lib.kms_envelope_decrypt_update, dec, src, chunk_size, False)
        if rc == 0:
            rc = lib.kms_envelope_decrypt_final(dec, ctypes.byref(err))
        if rc != 0:
            _raise(rc, err, w.failure, lib.kms_envelope_decryptor_released(dec))
        return EnvelopeInfo(lib.kms_envelope_decryptor_key_id(dec).decode(),
                            lib.kms_envelope_decryptor_key_version(dec))
    finally:
        lib.kms_envelope_decryptor_free(dec)


def file_op(dst_path, src_path, op):
    """op(src, dst) from src_path into a temporary file beside dst_path
    (mode 0600), renamed to dst_path only when op returned; removed
    otherwise."""
    dst_path = os.fspath(dst_path)
    folder = os.path.dirname(os.path.abspath(dst_path))
    fd, tmp = tempfile.mkstemp(prefix=".kms-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as dst, open(src_path, "rb") as src:
            info = op(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, dst_path)
        return info
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
