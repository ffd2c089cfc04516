/*
 * ops.h: the table of operations. One row per wire operation names it,
 * says which role may call it, and points at its validator and handler; the
 * pipeline dispatches through it and nothing else does. Handlers live in one
 * file per family (op_crypt.c, op_keys.c, op_aliases.c, op_misc.c).
 */
#ifndef KMS_OPS_H
#define KMS_OPS_H

#include <stdint.h>

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/pipeline/arena.h"
#include "kms/format/keyid.h"
#include "kms/pipeline/caller.h"
#include "kms/kmsd.h"

typedef enum op_role {
	ROLE_APP,     /* data plane */
	ROLE_ADMIN,   /* control plane */
	ROLE_AUDITOR, /* audit reads */
	ROLE_ANY,     /* Health */
} op_role;

/* What a handler learns that the audit entry records (never secret bytes). */
#define OP_BATCH_KEYS_MAX 32 /* distinct keys a batch's audit entry names */

typedef struct op_audit_info {
	char key_id[KMS_ALIAS_TEXT_MAX + 1]; /* a key id, or the alias it was asked by */
	uint32_t key_version;
	const Kms__Request *request; /* for its encryption context */
	/* Batches: every distinct key its items used (the first
	 * OP_BATCH_KEYS_MAX, and how many more), and how many items failed. */
	char (*batch_keys)[KMS_ALIAS_TEXT_MAX + 1];
	size_t n_batch_keys;
	size_t batch_keys_more;
	size_t batch_failed;
} op_audit_info;

/* One request in flight on one worker. */
typedef struct op_ctx {
	kmsd *d;
	arena *arena;      /* all reply memory comes from here; wiped after */
	const caller *caller;
	char *request_id;  /* "" until decoded */
	const struct op_entry *op;
	op_audit_info audit;
	int64_t now;       /* unix seconds at decode */
} op_ctx;

/* Checks a request's fields (sizes, formats, enums) before any handler runs.
 * On failure returns KMS_INVALID_ARGUMENT with a message naming the field. */
typedef kms_status (*op_validate_fn)(const Kms__Request *req);

/* Does the work and sets resp->result_case and its result, allocated from
 * ctx->arena. On failure returns the status; the message is the thread's
 * kms_error_message(). */
typedef kms_status (*op_handle_fn)(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp);

typedef struct op_entry {
	Kms__Request__OpCase op;
	const char *name; /* the proto field name: "encrypt", "create_key" */
	op_role role;
	op_validate_fn validate;
	op_handle_fn handle;
} op_entry;

/* The row for an operation, or NULL if the daemon does not serve it. */
const op_entry *ops_find(Kms__Request__OpCase op);

/* Rows by position (NULL past the end), and a row's position. */
const op_entry *ops_at(size_t i);
size_t ops_index(const op_entry *op);

/* Records the key a request used (or named) for its audit entry. */
void op_note_key(op_ctx *ctx, const char *key_id, uint32_t key_version);

/* p = zeroed arena memory for *p, or fail the handler with KMS_INTERNAL. */
#define OP_ALLOC(ctx, p)                                                          \
	KMS_ENSURE(((p) = arena_alloc((ctx)->arena, sizeof *(p))), KMS_INTERNAL,  \
	           "out of request memory")

/* Validators of one data-plane item, for the batch handlers. */
kms_status ops_validate_encrypt_item(const Kms__EncryptRequest *r) KMS_MUST_USE;
kms_status ops_validate_decrypt_item(const Kms__DecryptRequest *r) KMS_MUST_USE;
kms_status ops_validate_gdk_item(const Kms__GenerateDataKeyRequest *r) KMS_MUST_USE;

/* Handlers, by family. */
kms_status op_encrypt(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_decrypt(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_re_encrypt(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_generate_data_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_generate_data_key_without_plaintext(op_ctx *, const Kms__Request *,
                                                  Kms__Response *) KMS_MUST_USE;
kms_status op_generate_random(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_batch_encrypt(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_batch_decrypt(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_batch_generate_data_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_create_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_describe_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_keys(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_update_key_description(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_enable_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_disable_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_rotate_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_set_rotation_period(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_schedule_key_deletion(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_cancel_key_deletion(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_get_key_policy(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_put_key_policy(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_tag_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_untag_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_create_alias(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_update_alias(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_delete_alias(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_aliases(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_health(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_get_checkpoint(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_get_inclusion_proof(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_get_consistency_proof(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

#endif
