/*
 * kms/data_principals.h: libkmsclient's calls for data principals' sub-keys
 * under a per-data-principal key (docs/data-principals.md): erasure, legal
 * holds, the list of erasures that retention makes next, and a key's
 * retention per purpose. They follow kms/client.h's rules: every call
 * blocks until the answer or the client's timeout, is thread-safe, returns
 * a kms_status with *err filled, and leaves its outputs zeroed on failure.
 */
#ifndef KMS_DATA_PRINCIPALS_H
#define KMS_DATA_PRINCIPALS_H

#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Destroys data principal dp's (a pseudonym, kp_...) sub-key under key_id
 * at once, on basis (the legal basis, 1..256 bytes); *erased_at (may be
 * NULL) the time it took effect, unix seconds. */
KMS_EXPORT kms_status kms_erase_data_principal(kms_client *client, const char *key_id,
                                               const char *dp, const char *basis,
                                               int64_t *erased_at, kms_error *err) KMS_MUST_USE;

/* Places (statute: 1..256 bytes) or lifts (statute "") a legal hold on dp's
 * sub-key under key_id. */
KMS_EXPORT kms_status kms_set_data_principal_hold(kms_client *client, const char *key_id,
                                                  const char *dp, const char *statute,
                                                  kms_error *err) KMS_MUST_USE;

/* key_id's retention for sub-keys first used for purpose: days, or 0 to
 * remove it. */
KMS_EXPORT kms_status kms_set_retention(kms_client *client, const char *key_id,
                                        const char *purpose, uint32_t days,
                                        kms_error *err) KMS_MUST_USE;

typedef struct kms_due_erasure {
	char *key_id;
	char *data_principal;
	char *purpose;
	int64_t retention_ends_at; /* unix seconds */
	int64_t notice_at;         /* when pre_erasure was audited */
	int64_t erase_at;          /* when kmsd erases it (unless held) */
} kms_due_erasure;

typedef struct kms_due_erasure_list {
	kms_due_erasure *erasures;
	size_t n_erasures;
	char *next_page_token;     /* "" on the last page */
} kms_due_erasure_list;

/* One page (limit 0: kmsd's 100; page_token NULL or "": the first) of the
 * sub-keys noticed for erasure. Free with kms_due_erasure_list_free. */
KMS_EXPORT kms_status kms_list_due_erasures(kms_client *client, uint32_t limit,
                                            const char *page_token, kms_due_erasure_list *out,
                                            kms_error *err) KMS_MUST_USE;
KMS_EXPORT void kms_due_erasure_list_free(kms_due_erasure_list *list);

#ifdef __cplusplus
}
#endif

#endif
