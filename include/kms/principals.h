/*
 * kms/principals.h: libkmsclient's calls for principals, access keys and
 * grants (docs/authorization.md). They follow kms/client.h's rules: every
 * call blocks until the answer or the client's timeout, is thread-safe,
 * returns a kms_status with *err filled, and leaves its outputs zeroed on
 * failure. kmsd lets only admins call them (a grant's grantee may retire
 * its own grant).
 *
 * An access key's secret is returned once, by kms_create_access_key, in
 * kms_secure_alloc memory the caller releases with kms_secure_free; kmsd
 * never shows it again.
 */
#ifndef KMS_PRINCIPALS_H
#define KMS_PRINCIPALS_H

#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_PRINCIPAL_NAME_MAX 63       /* 1..63 of [A-Za-z0-9._-] */
#define KMS_CERT_NAME_MAX 64            /* 1..64 printable ASCII */
#define KMS_AUTHZ_ID_LEN 22             /* "AK" or "GR" + 20 of [A-Z2-7] */
#define KMS_ACCESS_KEY_SECRET_LEN 32

/* Roles, a bit set; a principal holds at least one. */
#define KMS_ROLE_ADMIN 1u
#define KMS_ROLE_APP 2u
#define KMS_ROLE_AUDITOR 4u

typedef enum kms_principal_state {
	KMS_PRINCIPAL_STATE_UNSPECIFIED = 0,
	KMS_PRINCIPAL_ENABLED = 1,
	KMS_PRINCIPAL_DISABLED = 2,
	KMS_PRINCIPAL_DELETED = 3,
} kms_principal_state;

typedef enum kms_access_key_state {
	KMS_ACCESS_KEY_STATE_UNSPECIFIED = 0,
	KMS_ACCESS_KEY_ACTIVE = 1,
	KMS_ACCESS_KEY_REVOKED = 2,
} kms_access_key_state;

typedef enum kms_grant_state {
	KMS_GRANT_STATE_UNSPECIFIED = 0,
	KMS_GRANT_LIVE = 1,
	KMS_GRANT_RETIRED = 2,
	KMS_GRANT_REVOKED = 3,
} kms_grant_state;

/* "ENABLED", "ACTIVE", "LIVE", ...; "UNKNOWN" out of range. */
KMS_EXPORT const char *kms_principal_state_name(kms_principal_state state);
KMS_EXPORT const char *kms_access_key_state_name(kms_access_key_state state);
KMS_EXPORT const char *kms_grant_state_name(kms_grant_state state);
/* "admin", "app", "auditor" for one KMS_ROLE_* bit; NULL otherwise. */
KMS_EXPORT const char *kms_role_name(unsigned role);
/* The KMS_ROLE_* bit named (case-insensitive); KMS_INVALID_ARGUMENT if none. */
KMS_EXPORT kms_status kms_role_parse(const char *name, unsigned *role) KMS_MUST_USE;

/* ---- principals ---- */

typedef struct kms_principal {
	char name[KMS_PRINCIPAL_NAME_MAX + 1];
	unsigned roles;                      /* KMS_ROLE_* bits */
	char cert_name[KMS_CERT_NAME_MAX + 1]; /* "" when none */
	kms_principal_state state;
	int64_t created_at;                  /* unix seconds */
	int64_t updated_at;
} kms_principal;

/* Creates an ENABLED principal with roles (KMS_ROLE_* bits, at least one)
 * and an optional certificate name (NULL: none). out may be NULL. A name in
 * use, or ever used, is KMS_ALREADY_EXISTS. */
KMS_EXPORT kms_status kms_create_principal(kms_client *client, const char *name,
                                           unsigned roles, const char *cert_name,
                                           kms_principal *out, kms_error *err) KMS_MUST_USE;

KMS_EXPORT kms_status kms_describe_principal(kms_client *client, const char *name,
                                             kms_principal *out, kms_error *err) KMS_MUST_USE;

typedef struct kms_principal_list {
	kms_principal *principals;
	size_t n_principals;
	char *next_page_token; /* "" on the last page */
} kms_principal_list;
KMS_EXPORT void kms_principal_list_free(kms_principal_list *list);

/* One page, ascending by name (deleted principals are not listed). */
KMS_EXPORT kms_status kms_list_principals(kms_client *client, uint32_t limit,
                                          const char *page_token, kms_principal_list *out,
                                          kms_error *err) KMS_MUST_USE;

KMS_EXPORT kms_status kms_enable_principal(kms_client *client, const char *name,
                                           kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_disable_principal(kms_client *client, const char *name,
                                            kms_error *err) KMS_MUST_USE;
/* Revokes its access keys and live grants; the name is never reused. */
KMS_EXPORT kms_status kms_delete_principal(kms_client *client, const char *name,
                                           kms_error *err) KMS_MUST_USE;

/* ---- access keys ---- */

typedef struct kms_access_key {
	char access_key_id[KMS_AUTHZ_ID_LEN + 1];
	char principal[KMS_PRINCIPAL_NAME_MAX + 1];
	kms_access_key_state state;
	int64_t created_at;
	int64_t revoked_at; /* 0 while active */
} kms_access_key;

/* A new access key for principal (at most two active: a third is
 * KMS_FAILED_PRECONDITION). key (may be NULL) gets its row; *secret gets
 * its KMS_ACCESS_KEY_SECRET_LEN bytes in secure memory (release with
 * kms_secure_free): the only time anyone sees it. */
KMS_EXPORT kms_status kms_create_access_key(kms_client *client, const char *principal,
                                            kms_access_key *key, uint8_t **secret,
                                            kms_error *err) KMS_MUST_USE;

typedef struct kms_access_key_list {
	kms_access_key *access_keys;
	size_t n_access_keys;
	char *next_page_token; /* "" on the last page */
} kms_access_key_list;
KMS_EXPORT void kms_access_key_list_free(kms_access_key_list *list);

/* One page of a principal's keys, active and revoked, oldest first. */
KMS_EXPORT kms_status kms_list_access_keys(kms_client *client, const char *principal,
                                           uint32_t limit, const char *page_token,
                                           kms_access_key_list *out,
                                           kms_error *err) KMS_MUST_USE;

KMS_EXPORT kms_status kms_revoke_access_key(kms_client *client, const char *access_key_id,
                                            kms_error *err) KMS_MUST_USE;

/* ---- grants ---- */

typedef struct kms_grant {
	char grant_id[KMS_AUTHZ_ID_LEN + 1];
	char key_id[KMS_KEY_ID_MAX + 1];
	char grantee[KMS_PRINCIPAL_NAME_MAX + 1];
	char creator[KMS_PRINCIPAL_NAME_MAX + 1];
	char **operations;   /* ascending */
	size_t n_operations;
	kms_tag *context;    /* required pairs (key, value) */
	size_t n_context;
	kms_grant_state state;
	int64_t created_at;
	int64_t ended_at;    /* 0 while live */
} kms_grant;
KMS_EXPORT void kms_grant_free(kms_grant *grant);

typedef struct kms_create_grant_params {
	const char *key_id;                 /* a key id or alias */
	const char *grantee;                /* a principal */
	const char *const *operations;      /* 1..16 data-plane operation names */
	size_t n_operations;
	const kms_context_pair *context;    /* required pairs; may be NULL */
	size_t n_context;
} kms_create_grant_params;

/* out may be NULL. */
KMS_EXPORT kms_status kms_create_grant(kms_client *client, const kms_create_grant_params *params,
                                       kms_grant *out, kms_error *err) KMS_MUST_USE;

typedef struct kms_grant_list {
	kms_grant *grants;
	size_t n_grants;
	char *next_page_token; /* "" on the last page */
} kms_grant_list;
KMS_EXPORT void kms_grant_list_free(kms_grant_list *list);

/* One page of the grants (every state) on key_id, to grantee, or both (at
 * least one is required; NULL: no filter), ascending by id. */
KMS_EXPORT kms_status kms_list_grants(kms_client *client, const char *key_id,
                                      const char *grantee, uint32_t limit,
                                      const char *page_token, kms_grant_list *out,
                                      kms_error *err) KMS_MUST_USE;

/* Retiring is for the grantee (or an admin); revoking for an admin. */
KMS_EXPORT kms_status kms_retire_grant(kms_client *client, const char *grant_id,
                                       kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_revoke_grant(kms_client *client, const char *grant_id,
                                       kms_error *err) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif

#endif
