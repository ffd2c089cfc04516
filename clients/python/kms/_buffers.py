"""kms._buffers: Python objects to C arguments and C memory back to
Python, without copying a caller's bytes where ctypes allows it.

Inputs are any bytes-like object: bytes and writable buffers (bytearray,
writable memoryview) are passed to C in place; any other read-only buffer
is copied once into bytes. A str is refused (encode it yourself).
"""
import ctypes
import os
from collections.abc import Mapping

from ._lib import ContextPair, lib
from .errors import INVALID_ARGUMENT, InvalidArgument


class CBuffer:
    """A bytes-like object as (ptr, length), valid while this object
    lives."""

    __slots__ = ("ptr", "length", "_keep")

    def __init__(self, data, what="data"):
        if isinstance(data, str):
            raise TypeError("%s must be bytes-like, not str (encode it)" % what)
        if isinstance(data, bytes):
            self._keep = data
            self.length = len(data)
            self.ptr = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
            return
        view = memoryview(data)
        if not view.c_contiguous:
            raise TypeError("%s must be a contiguous buffer" % what)
        view = view.cast("B")
        self.length = view.nbytes
        if view.readonly:
            self._keep = bytes(view)
            self.ptr = ctypes.cast(ctypes.c_char_p(self._keep), ctypes.c_void_p)
            return
        arr = (ctypes.c_char * self.length).from_buffer(view)
        self._keep = (view, arr)
        self.ptr = ctypes.cast(arr, ctypes.c_void_p)


def wipe(buf):
    """Zeroes a writable buffer (bytearray, writable memoryview) in place
    with libkmsclient's kms_wipe. bytes cannot be wiped: TypeError."""
    view = memoryview(buf)
    if view.readonly:
        raise TypeError("wipe: a read-only buffer (bytes) cannot be wiped; use bytearray")
    view = view.cast("B")
    if view.nbytes:
        arr = (ctypes.c_char * view.nbytes).from_buffer(view)
        lib.kms_wipe(ctypes.addressof(arr), view.nbytes)
        del arr
    view.release()


def copy_out(ptr, length, mutable=False):
    """length bytes at ptr as bytes, or as a bytearray (which the caller
    can wipe) when mutable; never through an intermediate bytes."""
    if not mutable:
        return ctypes.string_at(ptr, length) if length else b""
    out = bytearray(length)
    if length:
        arr = (ctypes.c_char * length).from_buffer(out)
        ctypes.memmove(arr, ptr, length)
        del arr
    return out


def c_int_in(value, lo, hi, what):
    """value as an int in [lo, hi], else InvalidArgument: ctypes would
    silently wrap it into the C field's range (2**32 + 100 ms became 100)."""
    import operator
    n = operator.index(value)
    if n < lo or n > hi:
        raise InvalidArgument(INVALID_ARGUMENT, "%s: %d is out of range (%d..%d)"
                              % (what, n, lo, hi))
    return n


INT_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


def c_text(value, what):
    """A str (or None) as NUL-terminated UTF-8 for C; an embedded NUL is
    refused (C would cut the string there)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        raise TypeError("%s must be str, not %s" % (what, type(value).__name__))
    if b"\0" in raw:
        raise InvalidArgument(INVALID_ARGUMENT, "%s contains a NUL character: remove it" % what)
    return raw


class CContext:
    """An encryption context (a mapping of str to str, or None) as a C
    array of kms_context_pair: ptr (or None) and n."""

    __slots__ = ("ptr", "n", "_keep")

    def __init__(self, context, what="context"):
        if context is None or len(context) == 0:
            if context is not None and not isinstance(context, Mapping):
                raise TypeError("%s must be a mapping of str to str" % what)
            self.ptr, self.n, self._keep = None, 0, None
            return
        if not isinstance(context, Mapping):
            raise TypeError("%s must be a mapping of str to str" % what)
        pairs = (ContextPair * len(context))()
        keep = []
        for i, (k, v) in enumerate(context.items()):
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("%s keys and values must be str" % what)
            kb, vb = c_text(k, what + " key"), c_text(v, what + " value")
            keep.append((kb, vb))
            pairs[i].key = kb
            pairs[i].value = vb
        self.ptr, self.n, self._keep = pairs, len(context), keep
