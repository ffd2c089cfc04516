/*
 * kms/keks.h: libkmsclient's calls for kmsd's key-encryption keys (KEKs,
 * docs/key-hierarchy.md): the HSM keys every wrapped key version is
 * wrapped under. They follow kms/client.h's rules: every call blocks until
 * the answer or the client's timeout, is thread-safe, returns a kms_status
 * with *err filled, and leaves its outputs zeroed on failure. kmsd lets
 * admins list and rotate KEKs, and auditors list them.
 */
#ifndef KMS_KEKS_H
#define KMS_KEKS_H

#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_KEK_HSM_ID_MAX 32 /* "kms-kek-00000001" */
#define KMS_KEKS_MAX 64       /* kmsd lists at most this many: the newest */

typedef enum kms_kek_state {
	KMS_KEK_STATE_UNSPECIFIED = 0,
	KMS_KEK_CREATING = 1, /* its token object is being made */
	KMS_KEK_CURRENT = 2,  /* new key versions are wrapped under it */
	KMS_KEK_DRAINING = 3, /* replaced: its versions are being re-wrapped */
	KMS_KEK_RETIRED = 4,  /* wraps nothing; its token object is destroyed */
} kms_kek_state;

/* "CREATING", "CURRENT", "DRAINING", "RETIRED"; "UNKNOWN" out of range. */
KMS_EXPORT const char *kms_kek_state_name(kms_kek_state state);

typedef struct kms_kek {
	uint32_t id;
	char hsm_id[KMS_KEK_HSM_ID_MAX + 1]; /* its CKA_ID on the token */
	kms_kek_state state;
	int64_t created_at;                  /* unix seconds */
	int64_t retired_at;                  /* 0 unless retired */
	uint64_t versions;                   /* key versions wrapped under it now */
} kms_kek;

typedef struct kms_kek_list {
	kms_kek *keks;                       /* ascending by id */
	size_t n_keks;
} kms_kek_list;
KMS_EXPORT void kms_kek_list_free(kms_kek_list *list);

/* kmsd's KEKs (the newest KMS_KEKS_MAX; older ones are retired), with the
 * versions each wraps: a draining KEK's count falling to 0 is the re-wrap
 * job's progress. */
KMS_EXPORT kms_status kms_list_keks(kms_client *client, kms_kek_list *out,
                                    kms_error *err) KMS_MUST_USE;

/* Makes a new KEK current; the previous one drains (kmsd re-wraps its
 * versions in the background, then retires it). KMS_FAILED_PRECONDITION
 * while a previous rotation's KEK is still draining. out may be NULL. */
KMS_EXPORT kms_status kms_rotate_kek(kms_client *client, kms_kek *out,
                                     kms_error *err) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif

#endif
