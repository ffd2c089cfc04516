/*
 * caller.h: who sent a request, as the transport proves it.
 *
 * On ipc:// the kernel reports the peer's uid, mapped to a principal by the
 * config's [ipc_principals]. On tls+tcp:// the client certificate is only a
 * gate (Debian's NNG cannot say which certificate a pipe presented), so the
 * principal is proven inside each request (docs/security.md, "Who may call"); until request
 * signing lands a TLS caller is "anonymous".
 */
#ifndef KMS_CALLER_H
#define KMS_CALLER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum caller_transport {
	CALLER_IPC,
	CALLER_TLS,
	CALLER_TCP, /* insecure_dev only */
} caller_transport;

typedef struct caller {
	caller_transport transport;
	bool has_uid;
	uint64_t uid;
	bool tls_verified;  /* the peer presented a certificate our CA signed */
	char source[96];    /* "ipc uid=1000", "tls 127.0.0.1:41234" */
	char principal[64]; /* resolved name, "" when none (TLS unsigned) */
	bool principal_found;     /* principal names a store principal that is not DELETED */
	uint32_t roles;           /* its PRINCIPAL_ROLE_* bits (0 when not found) */
	bool principal_disabled;  /* its state is DISABLED */
	char access_key_id[24];   /* the verified credential's access key id; "" when unsigned */
	bool ipc_root;            /* came over ipc from uid 0 */
} caller;

#endif
