/*
 * kms/client_raw.h: the escape hatch under kms/client.h, for tests and for
 * requests the typed calls do not cover. Needs <kms/kms.pb-c.h> (the
 * kms_proto target) and libprotobuf-c.
 */
#ifndef KMS_CLIENT_RAW_H
#define KMS_CLIENT_RAW_H

#include <kms/client.h>
#include <kms/kms.pb-c.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Sends req and waits for its answer, as the typed calls do. req is not
 * changed; the library sends a shallow copy in which an empty request_id
 * becomes a fresh one, schema_version 0 becomes the current version, and a
 * missing credential is added when the client has an access key.
 *
 * *resp gets the unpacked answer whenever a valid one arrived (its request
 * id matched), whatever its status; release it with kms_response_free (not
 * kms__response__free_unpacked: the library unpacks with its own wiping
 * allocator). Returns the answer's status (KMS_OK when the server said OK),
 * or a transport/protocol/local failure with *resp NULL. Blocks up to the
 * client's timeout.
 */
KMS_EXPORT kms_status kms_client_call(kms_client *client, const Kms__Request *req,
                                      Kms__Response **resp, kms_error *err) KMS_MUST_USE;

/* Releases (and wipes) a response from kms_client_call. NULL is ignored. */
KMS_EXPORT void kms_response_free(Kms__Response *resp);

/*
 * Sends request bytes exactly as given (no id, version or credential added,
 * nothing checked) and returns the answer's bytes as they came, in *resp
 * (release with kms_free; NULL when *resp_len is 0). For negative tests of
 * kmsd. KMS_OK when an answer arrived; KMS_UNAVAILABLE when none did.
 */
KMS_EXPORT kms_status kms_client_call_bytes(kms_client *client, const uint8_t *req,
                                            size_t req_len, uint8_t **resp,
                                            size_t *resp_len, kms_error *err) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif
#endif
