/*
 * ops.h: the table of operations. One row per wire operation (ops.c) holds
 * everything the daemon knows about it apart from its handler: its name,
 * which role may call it, its validator, how a batch's items are checked,
 * and which of its fields the audit entry records. The pipeline dispatches
 * through the table, the audit entry and the metrics read it, and the
 * request fuzz target builds its seeds and checks from it; none of them
 * names an operation. Handlers live in kms/ops/, one file per family
 * (op_crypt.c, op_sign.c, op_mac.c, op_keys.c, op_aliases.c, op_misc.c, op_audit.c,
 * op_principals.c, op_grants.c, op_hsm.c, op_consent.c).
 *
 * How to add an operation (the same list as docs/architecture.md):
 *   1. proto/kms.proto: the request and result messages and the oneof arms
 *      (Request.op and Response.result, both named as the operation). A
 *      batch's request holds `repeated <Item> items`, its response
 *      `repeated <Result> results`, each { status, message, result }.
 *   2. kms/pipeline/ops.c: one row: name, role, validator, handler, audit
 *      columns (which field names the key, whether it carries an
 *      encryption context, its batch items; op_audit_fields below), a
 *      batch's item validator, and changes_state for an operation that
 *      changes anything (its intent entry is written before it runs). The fuzz replay checks the row against the
 *      proto (ops_check_row).
 *   3. kms/ops/op_<family>.c: the handler (and its prototype below); a
 *      batch's handler is batch_run() (op_crypt.c) with a function for one
 *      item.
 *   4. include/kms/client.h and clients/lib/client_<family>.c: the call.
 *   5. clients/cli/: a row in the tool's command table and its handler.
 *   6. Tests: tests/kms/e2e/ (success and every documented failure against
 *      a real kmsd), tests/clients/; the request fuzz target's replay seeds
 *      and checks the new row from the descriptors by itself.
 * Nothing else: dispatch, validation, audit entries, metrics and the fuzz
 * seeds all read the table; nothing switches on the operation.
 */
#ifndef KMS_OPS_H
#define KMS_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/pipeline/arena.h"
#include "kms/format/keyid.h"
#include "kms/pipeline/caller.h"
#include "kms/kmsd.h"
#include "kms/store/store.h"

typedef enum op_role {
	ROLE_APP,     /* data plane */
	ROLE_ADMIN,   /* control plane */
	ROLE_AUDITOR, /* audit reads */
	ROLE_ANY,     /* Health */
} op_role;

/* What a handler learns that the audit entry records (never secret bytes). */

/* One batch item as it ended: the key it used (or named, when it failed
 * before one resolved; NULL: none noted), its version and its status. Its
 * context is read from the request (ops_audit_view_item). */
typedef struct op_audit_item {
	const char *key_id;
	uint32_t key_version;
	kms_status status;
} op_audit_item;

/* The audit entry's `consent` object (docs/consent.md): a consented use's
 * artefact, purpose, data principal, decision and reason token; a registry
 * operation's artefact or Consent Manager and action. Static or arena
 * strings; NULL members are left out, and no object when all are NULL. */
typedef struct op_audit_consent {
	const char *id, *purpose, *dp, *decision, *reason, *manager, *action;
} op_audit_consent;

typedef struct op_audit_info {
	char key_id[KMS_ALIAS_TEXT_MAX + 1]; /* a key id, or the alias it was asked by */
	uint32_t key_version;
	const Kms__Request *request; /* for its encryption context */
	/* Batches: every item, in order (arena memory), and how many failed. */
	op_audit_item *items;
	size_t n_items;
	size_t batch_failed;
	/* The request was refused because a string field holds U+0000: its
	 * strings were cut there by protobuf-c, so the entry records none of
	 * its context values (a prefix could pass for a real value). */
	bool string_nul;
	/* The intent entry of a control-plane change is durable: the outcome
	 * may use the room kept for it (audit_append_outcome). */
	bool intent_written;
	/* Verify, VerifyMac: "valid" or "invalid" once decided; NULL before. */
	const char *verdict;
	/* The real reason for a failure whose reply is deliberately vaguer
	 * (Decrypt's one answer for every blob that does not open), for the
	 * entry only; NULL: the reply's own message. Arena memory. */
	const char *error;
	/* The authorization decision, for the entry's `authz` object: NULL
	 * decision: no object (nothing was decided). decision is "allow",
	 * "deny" or "throttled", reason a stable token ("bad_mac", "unsigned_tls", ...) or the decision's step and statement, grant or role (static or arena memory),
	 * detail one line with ids and figures, never a secret or a MAC.
	 * Set through op_note_authz. */
	op_audit_consent consent;
	const char *authz_decision;
	const char *authz_reason;
	char authz_detail[192];
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
	uint32_t retry_after_ms; /* a THROTTLED reply's hint (authz_enforce.h) */
	/* Set by the key check (authz_enforce_key) for the key it allowed: its
	 * policy's RequireConsent; authz_consent_check reads it. */
	struct {
		char key_id[KMS_KEYID_TEXT_SIZE];
		bool required;
	} consent_gate;
	/* Request records (kms/pipeline/records.h), set by records_lookup. */
	struct {
		bool on;          /* answered, this request leaves a record */
		bool again;       /* it left one before: answered from it */
		int op;           /* its operation's field number in kms.Request */
		uint8_t digest[32];
		/* What its first run made (arena); NULL: nothing: the ciphertext
		 * blob, or GenerateMac's and Pseudonymize's answer tag (records.h). */
		uint8_t *blob;
		size_t blob_len;
		uint32_t version; /* GenerateMac, Pseudonymize: its first run's key version */
		uint8_t tag[32];  /* this run's answer tag (records_answer) */
		bool tagged;
	} record;
	/* A control-plane change on the fleet's database: its outcome entry
	 * commits with the change (store.h, store_companion; pipeline.c).
	 * NULL: the entry is written after the handler. */
	struct store_companion *companion;
} op_ctx;

/* Checks a request's fields (sizes, formats, enums) before any handler runs.
 * On failure returns KMS_INVALID_ARGUMENT with a message naming the field. */
typedef kms_status (*op_validate_fn)(const Kms__Request *req);

/* Checks one item of a batch (the message in the row's audit.items). The
 * handler calls it per item, so that one bad item fails alone. */
typedef kms_status (*op_validate_item_fn)(const ProtobufCMessage *item);

/* Does the work and sets resp->result_case and its result, allocated from
 * ctx->arena. On failure returns the status; the message is the thread's
 * kms_error_message(). */
typedef kms_status (*op_handle_fn)(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp);

/*
 * Which fields of an operation's message the audit entry records, by their
 * names in kms.proto (found through the protobuf-c descriptors; NULL: none).
 * In a batch, key and context are read from its first item.
 */
typedef struct op_audit_fields {
	/* Batches: the repeated message field holding the items. */
	const char *items;
	/* The string field naming the key the request is for: the entry names
	 * it (when well formed) if the handler noted no key (op_note_key). */
	const char *key;
	/* The string field the handler notes as the key before the keyring
	 * answers, so that a request failing there is logged under it; NULL
	 * when the handler notes only what the keyring resolved (a blob's
	 * key). Its value is recorded only through op_note_key. */
	const char *noted;
	/* The repeated StringPair field holding the encryption context. */
	const char *context;
	/* A bytes field the operation reads but the log must not hold (a
	 * message to sign or MAC): the entry records its length only. A
	 * repeated bytes field (Pseudonymize's values): their count and total
	 * length. */
	const char *message;
	/* An enum field recorded by its value's name (MessageType). */
	const char *message_type;
	/* String fields recorded as the entry's `data_principal`, `basis` and
	 * `hold` members (docs/data-principals.md). */
	const char *data_principal;
	const char *basis;
	const char *hold;
} op_audit_fields;

typedef struct op_entry {
	Kms__Request__OpCase op;
	const char *name; /* the proto field name: "encrypt", "create_key" */
	op_role role;
	/* A control-plane change (key or alias state, tags, policy,
	 * description): its durable intent entry is written before the
	 * handler runs, its outcome entry after (docs/audit-log.md). */
	bool changes_state;
	op_validate_fn validate;           /* NULL: nothing to check */
	op_validate_item_fn validate_item; /* batches only */
	op_handle_fn handle;
	const op_audit_fields *audit;      /* never NULL */
} op_entry;

/* The row for an operation, or NULL if the daemon does not serve it. */
const op_entry *ops_find(Kms__Request__OpCase op);

/* Rows by position (NULL past the end), and a row's position. */
const op_entry *ops_at(size_t i);
size_t ops_index(const op_entry *op);

/* Records the authorization decision for the audit entry's `authz` object
 * (op_audit_info above); decision and reason must be static strings. */
void op_note_authz(op_ctx *ctx, const char *decision, const char *reason, const char *detail);

/* Records the key a request used (or named) for its audit entry. */
void op_note_key(op_ctx *ctx, const char *key_id, uint32_t key_version);

/* The key check (kms/ops/op_authorize.c): resolves key_ref (an id or an
 * alias) into key_id, notes it for the audit entry, and decides whether the
 * caller may run this operation on it with this encryption context
 * (authz_enforce_key). Every handler calls it, or authz_enforce_key for a
 * key id it already has (a blob's), before the keyring uses the key. The
 * resolution's own failure (KMS_NOT_FOUND) is returned as is. */
kms_status op_authorize_ref(op_ctx *ctx, const char *key_ref, Kms__StringPair *const *pairs,
                            size_t n_pairs, char key_id[static KMS_KEYID_TEXT_SIZE]) KMS_MUST_USE;

/* A request's fields named by its row's audit column; NULL and 0 where the
 * operation has none, or the request lacks them. */
typedef struct op_audit_view {
	const ProtobufCMessage *subject; /* the operation's message; a batch's first item */
	size_t batch_items;              /* a batch's item count; 0 when not a batch */
	const char *key;
	const char *noted;
	Kms__StringPair *const *context;
	size_t n_context;
	bool has_message;                /* the row names a message column */
	size_t message_bytes;            /* its length; repeated: the total */
	size_t message_values;           /* repeated: how many; else 0 */
	const char *message_type;        /* the enum value's name; NULL: none */
	const char *data_principal;      /* the data-principal columns; NULL: none */
	const char *basis;
	const char *hold;
} op_audit_view;

void ops_audit_view(const Kms__Request *req, op_audit_view *out);

/* The same for item i of a batch (item 0 is what ops_audit_view gives);
 * subject NULL past the last item or when not a batch. */
void ops_audit_view_item(const Kms__Request *req, size_t i, op_audit_view *out);

/* Where a batch operation keeps its items and results, found through the
 * protobuf-c descriptors by the names kms.proto gives them (the list above);
 * batch_run() in op_crypt.c reads and fills them. */
typedef struct op_batch_shape {
	const ProtobufCFieldDescriptor *request;  /* Request: the batch's message */
	const ProtobufCFieldDescriptor *items;    /* there: its items */
	const ProtobufCFieldDescriptor *reply;    /* Response: the batch's result */
	const ProtobufCFieldDescriptor *results;  /* there: one result per item */
	const ProtobufCFieldDescriptor *status;   /* in a result: the item's status, */
	const ProtobufCFieldDescriptor *message;  /* its error message, */
	const ProtobufCFieldDescriptor *result;   /* and its response */
} op_batch_shape;

/* KMS_INTERNAL, naming what is missing, for a row that is not a batch or
 * whose messages do not have that shape. */
kms_status ops_batch_shape(const op_entry *op, op_batch_shape *out) KMS_MUST_USE;

/* A field of a protobuf-c message, through its descriptor: a pointer
 * member (a message, a string, a repeated field's array), an item of a
 * repeated message field, a repeated field's count, an enum. They copy
 * bytes rather than cast, because the member's declared type is the
 * generated one (Kms__EncryptRequest **, not ProtobufCMessage **). */
void *ops_field_get(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
ProtobufCMessage *ops_field_item(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                                 size_t i);
void ops_field_set(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const void *value);
size_t ops_field_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
void ops_field_set_count(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, size_t n);
void ops_field_set_enum(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int value);

/* Checks a row against kms.proto: every field its audit column names exists
 * with the right type, and a batch row has an item validator and the
 * response shape batch_run() fills. KMS_INTERNAL, naming the field, if not. */
kms_status ops_check_row(const op_entry *op) KMS_MUST_USE;

/* p = zeroed arena memory for *p, or fail the handler with KMS_INTERNAL. */
#define OP_ALLOC(ctx, p)                                                          \
	KMS_ENSURE(((p) = arena_alloc((ctx)->arena, sizeof *(p))), KMS_INTERNAL,  \
	           "out of request memory")

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
kms_status op_add_consent_manager(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_consent_managers(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_remove_consent_manager(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_import_consent(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_set_consent_status(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_consents(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_describe_consent(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_sign(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_verify(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_get_public_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_generate_mac(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_verify_mac(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_pseudonymize(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_create_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
/* CreateKey's spec, usage and protection from the wire, checked together
 * (keyring_spec_check): for the validator and the handler alike. */
kms_status op_create_key_kind(const Kms__CreateKeyRequest *r, key_spec *spec, key_usage *usage,
                              key_protection *protection) KMS_MUST_USE;
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

kms_status op_create_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_principals(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_describe_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_enable_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_disable_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_delete_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_create_access_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_access_keys(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_revoke_access_key(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_create_grant(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_grants(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_retire_grant(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_revoke_grant(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_list_keks(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

kms_status op_erase_data_principal(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_set_data_principal_hold(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_list_due_erasures(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_set_retention(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;
kms_status op_rotate_kek(op_ctx *, const Kms__Request *, Kms__Response *) KMS_MUST_USE;

#endif
