"""kms.errors: the exceptions of the kms package, one per kms status.

Every failed call raises a subclass of KmsError carrying the status (its
number and wire name), where the error came from (origin) and the one line
libkmsclient wrote for a human. Never secret bytes.
"""

# kms_status (include/kms/status.h), the wire values of proto Status.
OK = 0
INVALID_ARGUMENT = 1
NOT_FOUND = 2
ALREADY_EXISTS = 3
FAILED_PRECONDITION = 4
INVALID_CIPHERTEXT = 5
ACCESS_DENIED = 6
THROTTLED = 7
HSM_UNAVAILABLE = 8
INTERNAL = 9
UNAVAILABLE = 10

STATUS_NAMES = {
    OK: "OK",
    INVALID_ARGUMENT: "INVALID_ARGUMENT",
    NOT_FOUND: "NOT_FOUND",
    ALREADY_EXISTS: "ALREADY_EXISTS",
    FAILED_PRECONDITION: "FAILED_PRECONDITION",
    INVALID_CIPHERTEXT: "INVALID_CIPHERTEXT",
    ACCESS_DENIED: "ACCESS_DENIED",
    THROTTLED: "THROTTLED",
    HSM_UNAVAILABLE: "HSM_UNAVAILABLE",
    INTERNAL: "INTERNAL",
    UNAVAILABLE: "UNAVAILABLE",
}

# kms_error_origin (include/kms/client.h).
ORIGIN_NAMES = {0: "none", 1: "local", 2: "transport", 3: "protocol", 4: "server"}


class KmsError(Exception):
    """A kms call failed. status: the kms status number; status_name: its
    wire name; origin: "local", "transport", "protocol" or "server";
    message: libkmsclient's one line (the server's message, or the local
    reason)."""

    status = None

    def __init__(self, status, message, origin="local"):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "UNKNOWN")
        self.origin = origin
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message) if message else self.status_name)


class InvalidArgument(KmsError):
    """The request is malformed or out of range (also refused locally)."""
    status = INVALID_ARGUMENT


class NotFound(KmsError):
    """No such key, alias or version."""
    status = NOT_FOUND


class AlreadyExists(KmsError):
    """The alias or id is taken."""
    status = ALREADY_EXISTS


class FailedPrecondition(KmsError):
    """The key is disabled or pending deletion."""
    status = FAILED_PRECONDITION


class InvalidCiphertext(KmsError):
    """The blob or message does not parse or authenticate (a wrong context
    looks the same as a tampered blob)."""
    status = INVALID_CIPHERTEXT


class AccessDenied(KmsError):
    """The caller may not do this."""
    status = ACCESS_DENIED


class Throttled(KmsError):
    """A rate limit: retry later. retry_after_ms: kmsd's hint (0: none)."""
    status = THROTTLED

    def __init__(self, status, message, origin="server", retry_after_ms=0):
        super().__init__(status, message, origin)
        self.retry_after_ms = retry_after_ms


class HsmUnavailable(KmsError):
    """kmsd's HSM failed or cannot be reached."""
    status = HSM_UNAVAILABLE


class InternalError(KmsError):
    """A bug or an unexpected local failure (also a failing write in an
    envelope stream, chained to its Python exception)."""
    status = INTERNAL


class Unavailable(KmsError):
    """No connection, no answer in time, connection lost, or kmsd's audit
    log down."""
    status = UNAVAILABLE


_BY_STATUS = {cls.status: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, InvalidCiphertext,
    AccessDenied, Throttled, HsmUnavailable, InternalError, Unavailable)}


def error_for(status, message, origin="local", retry_after_ms=0):
    """The exception for a kms status (KmsError for a number this package
    does not know)."""
    cls = _BY_STATUS.get(status, KmsError)
    if cls is Throttled:
        return cls(status, message, origin, retry_after_ms)
    return cls(status, message, origin)
