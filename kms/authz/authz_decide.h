/*
 * authz_decide.h: the authorization decision for one request
 * (docs/authorization.md, "Roles" and "The decision"). Pure: it reads what
 * it is given (the principal, the operation's row, the key's compiled
 * policy, the live grants, the request's encryption contexts) and touches
 * no store, HSM or clock, so the caller looks everything up fresh for each
 * request and a change is seen by the next one.
 *
 * Deny by default; an explicit Deny wins over any Allow or grant.
 */
#ifndef KMS_AUTHZ_DECIDE_H
#define KMS_AUTHZ_DECIDE_H

#include <stdbool.h>
#include <stddef.h>

#include <kms/kms.pb-c.h>

#include "kms/authz/authz_policy.h"
#include "kms/pipeline/ops.h"

/* The role family of an operation (docs/authorization.md, "Roles"): what
 * step 2 admits, and whether the operation is on one key (steps 3 to 5) or
 * on none (it stops after step 2). */
typedef enum authz_family {
	AUTHZ_FAMILY_UNKNOWN = 0, /* an operation this table does not know: denied */
	AUTHZ_FAMILY_DATA,        /* encrypt, decrypt, ..., batch_* */
	AUTHZ_FAMILY_RANDOM,      /* generate_random */
	AUTHZ_FAMILY_KEY_CONTROL, /* create_key and the key and alias changes */
	AUTHZ_FAMILY_KEY_READ,    /* describe_key, list_keys, list_aliases, get_key_policy */
	AUTHZ_FAMILY_AUDIT_READ,  /* get_checkpoint, get_inclusion_proof, get_consistency_proof */
	AUTHZ_FAMILY_PRINCIPALS,  /* the principal, access key and grant operations */
	AUTHZ_FAMILY_HEALTH,      /* health */
	AUTHZ_FAMILY_GRANT_RETIRE, /* retire_grant: any principal; its handler admits
	                            * only the grantee or an admin */
	AUTHZ_FAMILY_HSM_ADMIN,   /* rotate_kek: HSM administration, admin only */
	AUTHZ_FAMILY_HSM_READ,    /* list_keks: admin or auditor */
	AUTHZ_FAMILY_CONSENT_ADMIN, /* add/remove_consent_manager: admin only */
	AUTHZ_FAMILY_CONSENT_WRITE, /* import_consent, set_consent_status: any known
	                             * principal; the handler admits an admin or the
	                             * Consent Manager's bound principal */
	AUTHZ_FAMILY_CONSENT_READ,  /* list_consent_managers, list_consents,
	                             * describe_consent: admin or auditor */
} authz_family;

typedef struct authz_op_class {
	authz_family family;
	bool keyed; /* on one key: the policy and grants are consulted */
} authz_op_class;

/* The class of an operation by its row's name; family UNKNOWN (and so a
 * denial) for a row this table does not list. */
authz_op_class authz_op_classify(const op_entry *op);

/* The family's name, for reasons: "data plane", "key control plane". */
const char *authz_family_name(authz_family f);

/* Who asks: looked up for this request. */
typedef struct authz_principal {
	const char *name;  /* NULL: not known (refused at step 1) */
	unsigned roles;    /* AUTHZ_ROLE_* */
	bool disabled;
	bool key_revoked;  /* the access key the request was signed with */
} authz_principal;

/* A key=value pair of a grant's required context. */
typedef struct authz_pair {
	const char *key;
	const char *value;
} authz_pair;

/* A live grant (not retired or revoked) for this principal and key. */
typedef struct authz_grant {
	const char *id;                 /* "GR..." */
	const char *const *operations;  /* operation names */
	size_t n_operations;
	const authz_pair *context;      /* required pairs; all must be present */
	size_t n_context;
} authz_grant;

/* One encryption context of the request (a batch: one per item). */
typedef struct authz_context {
	Kms__StringPair *const *pairs;
	size_t n;
} authz_context;

typedef struct authz_request {
	const authz_principal *principal;
	const op_entry *op;
	/* The key the operation is on (for a batch or re_encrypt: decide once
	 * per key, with the contexts of the items on it); NULL for key-less
	 * operations. A keyed operation without a key is denied. */
	const char *key_id;
	const authz_policy *policy;     /* the key's; NULL: the default policy */
	const authz_grant *grants;      /* live grants for (principal, key_id) */
	size_t n_grants;
	const authz_context *contexts;  /* every one must satisfy a condition */
	size_t n_contexts;              /* 0: one empty context */
} authz_request;

typedef enum authz_step {
	AUTHZ_STEP_PRINCIPAL = 1, /* disabled principal, revoked access key */
	AUTHZ_STEP_ROLE = 2,      /* the family does not admit the roles */
	AUTHZ_STEP_DENY = 3,      /* a Deny statement matched */
	AUTHZ_STEP_ALLOW = 4,     /* an Allow statement, a grant, or a reader's role */
	AUTHZ_STEP_DEFAULT = 5,   /* nothing allowed it */
} authz_step;

#define AUTHZ_REASON_MAX 192
#define AUTHZ_MESSAGE_MAX 512

typedef struct authz_decision {
	bool allow;
	authz_step step;
	long statement;       /* the statement's index that decided; -1: none */
	const char *sid;      /* its Sid ("" when none); NULL when no statement decided */
	const char *grant_id; /* the grant that allowed; NULL when none */
	/* For the audit entry and kmsd's log: which step, statement or grant. */
	char reason[AUTHZ_REASON_MAX];
	/* For the client, on a denial: "principal P may not OPERATION key K";
	 * never the policy's contents. "" when allowed. */
	char message[AUTHZ_MESSAGE_MAX];
} authz_decision;

/* Decides; never fails (anything missing or unknown is a denial). */
void authz_decide(const authz_request *req, authz_decision *out);

/* Whether the principal matches statement s (by "*", role or name). */
bool authz_statement_names(const authz_statement *s, const authz_principal *who);

/* Whether context c satisfies statement s's condition (all parts). */
bool authz_condition_holds(const authz_condition *cond, const authz_context *c);

#endif
