"""kms: a Python client of kmsd over libkmsclient.so.0 (ctypes).

    import kms
    with kms.Client(endpoint="ipc:///run/kms/kms.sock") as c:
        blob = c.encrypt("alias/orders", b"4111...", context={"table": "cards"})
        card = c.decrypt(blob, context={"table": "cards"})

Bytes in, bytes out; every failure raises a kms.KmsError subclass
(kms.AccessDenied, kms.NotFound, kms.InvalidCiphertext, kms.Unavailable, ...)
with .status, .status_name, .origin and .message. docs/python.md has the
whole API and what Python cannot wipe.

The library: $KMS_LIBKMSCLIENT when set, else libkmsclient.so.0 from the
dynamic linker's path; importing fails with ImportError naming what to
install when neither loads.
"""
from ._buffers import wipe
from ._envelope import EnvelopeInfo
from .client import Client, DataKey, Encrypted, Health
from .errors import (AccessDenied, AlreadyExists, FailedPrecondition, HsmUnavailable,
                     InternalError, InvalidArgument, InvalidCiphertext, KmsError, NotFound,
                     Throttled, Unavailable)

__all__ = [
    "Client", "DataKey", "Encrypted", "EnvelopeInfo", "Health", "wipe",
    "KmsError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
    "InvalidCiphertext", "AccessDenied", "Throttled", "HsmUnavailable", "InternalError",
    "Unavailable",
]
