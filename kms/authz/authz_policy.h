/*
 * authz_policy.h: a key policy (docs/authorization.md, "Key policies"):
 * the JSON document parsed strictly with jansson and compiled into
 * statements the decision (authz_decide.h) evaluates without touching JSON.
 *
 * A refused document gets one line naming the statement and member that is
 * wrong ("policy Statement[2].Action[1]: ..."), never its content: a policy
 * is the key owner's, and the message may reach a log or another caller.
 */
#ifndef KMS_AUTHZ_POLICY_H
#define KMS_AUTHZ_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/format/authz_names.h"

/* A principal's roles, as a bitmask: the store's PRINCIPAL_ROLE_* bits
 * (checked at compile time in authz_policy.c). */
enum {
	AUTHZ_ROLE_ADMIN = 1u << 0,
	AUTHZ_ROLE_APP = 1u << 1,
	AUTHZ_ROLE_AUDITOR = 1u << 2,
};

/* The only Version a policy may have. */
#define AUTHZ_POLICY_VERSION "2024-01-01"

/* Bounds of one document: statements, and in one statement the principals,
 * actions, and the entries of each condition part (ContextKeys' keys,
 * ContextEquals' pairs, ContextIn's keys and each key's values). */
#define AUTHZ_POLICY_STATEMENTS_MAX 64
#define AUTHZ_POLICY_ENTRIES_MAX 64
/* A Sid: 1..64 of [A-Za-z0-9._-] (it is audited). */
#define AUTHZ_SID_MAX 64

/* Operations a policy can name: a bit per row of the operation table. */
#define AUTHZ_OPS_MAX 128

typedef struct authz_in {
	const char *key;
	const char **values;
	size_t n_values;
} authz_in;

/* All parts must hold; absent parts hold. */
typedef struct authz_condition {
	const char **keys; /* ContextKeys */
	size_t n_keys;
	const char **eq_keys, **eq_values; /* ContextEquals */
	size_t n_eq;
	authz_in *in; /* ContextIn */
	size_t n_in;
} authz_condition;

typedef struct authz_statement {
	const char *sid; /* "" when the statement has none */
	bool deny;
	bool any_principal;
	unsigned roles; /* role:NAME entries */
	const char **names;
	size_t n_names;
	bool any_action;
	uint64_t actions[AUTHZ_OPS_MAX / 64]; /* bit ops_index(row) */
	authz_condition cond;
} authz_statement;

/* A compiled policy. Read-only once parsed, so any number of threads may
 * evaluate it at once. Its strings point into the parsed document it keeps. */
typedef struct authz_policy {
	authz_statement *statements;
	size_t n_statements;
	/* "RequireConsent": true: every encrypting or decrypting use of the
	 * key is a consented use (docs/consent.md), whoever is allowed it. */
	bool require_consent;
	void *doc;    /* the jansson document the strings point into */
	void *blocks; /* the arrays above, freed together */
} authz_policy;

/* Parses and compiles a policy of len bytes (at most KMS_POLICY_MAX).
 * KMS_INVALID_ARGUMENT with one line naming the statement and member on
 * any departure from the grammar; KMS_INTERNAL when out of memory. */
kms_status authz_policy_parse(const char *json, size_t len, authz_policy **out) KMS_MUST_USE;

void authz_policy_free(authz_policy *p);

/* The default policy of a key created without one: the admins-manage
 * statement (admins manage the key; no one uses it). */
extern const char authz_default_policy_json[];

/* The default policy compiled (once, on first use); NULL only if that
 * failed, which the decision treats as deny. */
const authz_policy *authz_policy_default(void);

/* Whether statement s allows or denies action (an operation table row's
 * index), ignoring principal and condition. */
bool authz_statement_has_action(const authz_statement *s, size_t op_index);

#endif
