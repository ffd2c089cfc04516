"""kms._lib: libkmsclient.so.0 through ctypes: finding it, the C structs of
include/kms/client.h and include/kms/envelope.h, and the functions' types.

Which library: $KMS_LIBKMSCLIENT (a path) when set, else the one the
dynamic linker finds (ctypes.util.find_library("kmsclient"), then the
SONAME libkmsclient.so.0 itself). The structs below must match the C
headers field for field; the package's tests compare their sizes with the
C compiler's.
"""
import ctypes
import ctypes.util
import os

SONAME = "libkmsclient.so.0"

KEY_ID_MAX = 64            # KMS_KEY_ID_MAX
ERROR_MESSAGE_MAX = 256    # KMS_ERROR_MESSAGE_MAX
SIGN_SECRET_LEN = 32       # KMS_SIGN_SECRET_LEN
DATA_KEY_LEN = 32          # KMS_DATA_KEY_LEN
ENCRYPT_MAX_PLAINTEXT = 4096   # KMS_ENCRYPT_MAX_PLAINTEXT
GENERATE_RANDOM_MAX = 1024     # KMS_GENERATE_RANDOM_MAX
ENVELOPE_SEGMENT_DEFAULT = 65536

_u8p = ctypes.POINTER(ctypes.c_uint8)
_status = ctypes.c_int


class Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int),
                ("origin", ctypes.c_int),
                ("message", ctypes.c_char * ERROR_MESSAGE_MAX),
                ("retry_after_ms", ctypes.c_uint32)]


class ClientOptions(ctypes.Structure):
    _fields_ = [("endpoints", ctypes.POINTER(ctypes.c_char_p)),
                ("n_endpoints", ctypes.c_size_t),
                ("timeout_ms", ctypes.c_int),
                ("resend_ms", ctypes.c_int),
                ("max_response_bytes", ctypes.c_size_t),
                ("tls_ca_file", ctypes.c_char_p),
                ("tls_cert_file", ctypes.c_char_p),
                ("tls_key_file", ctypes.c_char_p),
                ("tls_server_name", ctypes.c_char_p),
                ("insecure_plain_tcp", ctypes.c_bool),
                ("access_key_id", ctypes.c_char_p),
                ("access_key_secret", _u8p),
                ("credentials_file", ctypes.c_char_p),
                ("no_env_credentials", ctypes.c_bool),
                ("server_uid", ctypes.c_uint32)]


class ContextPair(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class Ciphertext(ctypes.Structure):
    _fields_ = [("blob", _u8p),
                ("blob_len", ctypes.c_size_t),
                ("key_id", ctypes.c_char * (KEY_ID_MAX + 1)),
                ("key_version", ctypes.c_uint32)]


class Plaintext(ctypes.Structure):
    _fields_ = [("bytes", _u8p),
                ("len", ctypes.c_size_t),
                ("key_id", ctypes.c_char * (KEY_ID_MAX + 1)),
                ("key_version", ctypes.c_uint32)]


class DataKey(ctypes.Structure):
    _fields_ = [("plaintext", _u8p),
                ("plaintext_len", ctypes.c_size_t),
                ("blob", _u8p),
                ("blob_len", ctypes.c_size_t),
                ("key_id", ctypes.c_char * (KEY_ID_MAX + 1)),
                ("key_version", ctypes.c_uint32)]


class Reencrypted(ctypes.Structure):
    _fields_ = [("ciphertext", Ciphertext),
                ("source_key_id", ctypes.c_char * (KEY_ID_MAX + 1)),
                ("source_key_version", ctypes.c_uint32)]


class Health(ctypes.Structure):
    _fields_ = [("hsm_ok", ctypes.c_bool),
                ("region", ctypes.c_char_p),
                ("version", ctypes.c_char_p),
                ("uptime_seconds", ctypes.c_uint64),
                ("token_label", ctypes.c_char_p),
                ("hsm_message", ctypes.c_char_p),
                ("audit_size", ctypes.c_uint64),
                ("principal", ctypes.c_char_p),
                ("hsm_manufacturer", ctypes.c_char_p),
                ("hsm_model", ctypes.c_char_p),
                ("hsm_serial", ctypes.c_char_p),
                ("hsm_pinned", ctypes.c_bool),
                ("data_dir", ctypes.c_char_p),
                ("store_path", ctypes.c_char_p)]


class EnvelopeEncryptOptions(ctypes.Structure):
    _fields_ = [("segment_size", ctypes.c_uint32),
                ("cache", ctypes.c_void_p),
                ("size_known", ctypes.c_bool),
                ("size", ctypes.c_uint64)]


class EnvelopeDecryptOptions(ctypes.Structure):
    _fields_ = [("key_id", ctypes.c_char_p),
                ("require_context", ctypes.c_bool),
                ("context", ctypes.POINTER(ContextPair)),
                ("n_context", ctypes.c_size_t),
                ("cache", ctypes.c_void_p),
                ("size_known", ctypes.c_bool),
                ("size", ctypes.c_uint64)]


# The C type names, for the size check against the compiler's.
STRUCTS = {
    "kms_error": Error,
    "kms_client_options": ClientOptions,
    "kms_context_pair": ContextPair,
    "kms_ciphertext": Ciphertext,
    "kms_plaintext": Plaintext,
    "kms_data_key": DataKey,
    "kms_reencrypted": Reencrypted,
    "kms_health": Health,
    "kms_envelope_encrypt_options": EnvelopeEncryptOptions,
    "kms_envelope_decrypt_options": EnvelopeDecryptOptions,
}

# int (*)(void *arg, const uint8_t *bytes, size_t len)
WriteFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_P = ctypes.POINTER
_E = _P(Error)
_CTX = _P(ContextPair)
_vp = ctypes.c_void_p
_sz = ctypes.c_size_t
_cs = ctypes.c_char_p

# name: (restype, argtypes)
_PROTOTYPES = {
    "kms_status_name": (_cs, [_status]),
    "kms_client_open": (_status, [_P(ClientOptions), _P(_vp), _E]),
    "kms_client_close": (None, [_vp]),
    "kms_free": (None, [_vp]),
    "kms_secure_free": (None, [_vp]),
    "kms_wipe": (None, [_vp, _sz]),
    "kms_encrypt": (_status, [_vp, _cs, _vp, _sz, _CTX, _sz, _P(Ciphertext), _E]),
    "kms_ciphertext_free": (None, [_P(Ciphertext)]),
    "kms_decrypt": (_status, [_vp, _vp, _sz, _CTX, _sz, _cs, _P(Plaintext), _E]),
    "kms_plaintext_free": (None, [_P(Plaintext)]),
    "kms_re_encrypt": (_status, [_vp, _vp, _sz, _CTX, _sz, _cs, _CTX, _sz,
                                 _P(Reencrypted), _E]),
    "kms_reencrypted_free": (None, [_P(Reencrypted)]),
    "kms_generate_data_key": (_status, [_vp, _cs, _CTX, _sz, _P(DataKey), _E]),
    "kms_generate_data_key_without_plaintext": (_status, [_vp, _cs, _CTX, _sz,
                                                          _P(DataKey), _E]),
    "kms_data_key_free": (None, [_P(DataKey)]),
    "kms_generate_random": (_status, [_vp, _sz, _P(_vp), _E]),
    "kms_health_check": (_status, [_vp, _P(Health), _E]),
    "kms_health_free": (None, [_P(Health)]),
    "kms_envelope_encrypt_buffer": (_status, [_vp, _cs, _CTX, _sz,
                                              _P(EnvelopeEncryptOptions), _vp, _sz,
                                              _P(_vp), _P(_sz), _E]),
    "kms_envelope_decrypt_buffer": (_status, [_vp, _P(EnvelopeDecryptOptions), _vp, _sz,
                                              _P(_vp), _P(_sz), _E]),
    "kms_envelope_encrypt_init": (_status, [_vp, _cs, _CTX, _sz,
                                            _P(EnvelopeEncryptOptions), WriteFn, _vp,
                                            _P(_vp), _E]),
    "kms_envelope_encrypt_update": (_status, [_vp, _vp, _sz, _E]),
    "kms_envelope_encrypt_final": (_status, [_vp, _E]),
    "kms_envelope_encryptor_key_id": (_cs, [_vp]),
    "kms_envelope_encryptor_key_version": (ctypes.c_uint32, [_vp]),
    "kms_envelope_encryptor_free": (None, [_vp]),
    "kms_envelope_decrypt_init": (_status, [_vp, _P(EnvelopeDecryptOptions), WriteFn, _vp,
                                            _P(_vp), _E]),
    "kms_envelope_decrypt_update": (_status, [_vp, _vp, _sz, _E]),
    "kms_envelope_decrypt_final": (_status, [_vp, _E]),
    "kms_envelope_decryptor_released": (ctypes.c_uint64, [_vp]),
    "kms_envelope_decryptor_key_id": (_cs, [_vp]),
    "kms_envelope_decryptor_key_version": (ctypes.c_uint32, [_vp]),
    "kms_envelope_decryptor_free": (None, [_vp]),
}


def _candidates():
    path = os.environ.get("KMS_LIBKMSCLIENT")
    if path:
        return [path], True
    found = ctypes.util.find_library("kmsclient")
    names = [found] if found else []
    if SONAME not in names:
        names.append(SONAME)
    return names, False


def load():
    """The library with every prototype set; ImportError saying what to
    install (or which path failed) when it cannot be loaded."""
    names, from_env = _candidates()
    reasons = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            reasons.append(str(e))
    else:
        if from_env:
            raise ImportError("kms: cannot load KMS_LIBKMSCLIENT=%s (%s): point it at "
                              "libkmsclient.so.0 or unset it" % (names[0], "; ".join(reasons)))
        raise ImportError("kms: %s not found: install libkmsclient (the kms package, or "
                          "`cmake --install` of the kms tree, docs/install.md) or set "
                          "KMS_LIBKMSCLIENT to its path" % SONAME)
    for fname, (restype, argtypes) in _PROTOTYPES.items():
        try:
            f = getattr(lib, fname)
        except AttributeError:
            raise ImportError("kms: %s has no %s: it is older than this package; install "
                              "a matching libkmsclient" % (lib._name, fname)) from None
        f.restype = restype
        f.argtypes = argtypes
    return lib


lib = load()
