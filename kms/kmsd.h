/*
 * kmsd.h: the daemon's shared state, built at start-up by main.c and read by
 * every worker. Fields are set before the first worker starts and not
 * changed after, except `draining` (atomic).
 */
#ifndef KMS_KMSD_H
#define KMS_KMSD_H

#include <stdatomic.h>
#include <stdint.h>

#include "kms/config.h"
#include "kms/kmsd_residency.h"

typedef struct hsm hsm;
typedef struct keyring keyring;
typedef struct audit_log audit_log;
typedef struct refusals refusals;
typedef struct server server;
typedef struct authz_keys authz_keys;
typedef struct authz_verifier authz_verifier;
typedef struct authz_enforce authz_enforce;

/* The one version of the tree: project(VERSION) in CMakeLists.txt, given to
 * every target as KMS_VERSION (kmsd, libkmsclient, the CLIs). */
#define KMSD_VERSION KMS_VERSION

typedef struct kmsd {
	kmsd_config cfg;
	hsm *hsm;
	keyring *keyring;
	audit_log *audit; /* NULL until the audit log is configured */
	refusals *refusals; /* pre-authentication refusals (pipeline/refusals.h); may be NULL */
	authz_enforce *authz; /* the decision and rate limits (authz/authz_enforce.h) */
	server *transport;  /* the listeners (transport/server.h), for /healthz; may be NULL */
	authz_keys *authz_keys;         /* access keys from the store (authz/authz_keys.h) */
	authz_verifier *authz_verifier; /* signed requests' checks (authz/authz_verify.h) */
	kmsd_residency residency; /* the token checked against [hsm] pinned at start */
	char *store_password; /* [store] password_file's, locked (kmsd_store.h); NULL: none */
	int64_t started_at; /* unix seconds */
	atomic_bool draining;
} kmsd;

#endif
