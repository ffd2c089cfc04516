/*
 * client.c: the kms_client object and its transport: one NNG REQ socket,
 * one dialer per endpoint, one NNG context per call.
 */
#include "clients/lib/client_internal.h"
#include "common/nng_close.h"

#include <errno.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>
#include <sys/random.h>

#include "common/error.h"

/* A TLS client certificate or key file larger than this is not one. */
#define CLIENT_PEM_MAX (256 * 1024)

/* ---- errors ---- */

void client_error_clear(kms_error *err)
{
	if (!err)
		return;
	err->status = KMS_OK;
	err->origin = KMS_ERROR_NONE;
	err->message[0] = '\0';
	err->retry_after_ms = 0;
}

kms_status client_fail(kms_error *err, kms_status status, kms_error_origin origin,
                       const char *fmt, ...)
{
	if (!err)
		return status;
	va_list ap;
	va_start(ap, fmt);
	/* Truncation is fine: the message is one line for a human. */
	int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	if (n < 0)
		err->message[0] = '\0';
	err->status = status;
	err->origin = origin;
	return status;
}

void client_copy_clean(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	if (cap == 0)
		return;
	for (; src && src[i] && i + 1 < cap; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	dst[i] = '\0';
}

kms_status client_protocol_error(kms_error *err, const char *op, const char *what)
{
	return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
	                   "answer to %s is malformed: %s", op, what);
}

kms_status client_begin(void *out, size_t size, const char *op, kms_error *err)
{
	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: out is required", op);
	memset(out, 0, size);
	return KMS_OK;
}

kms_status client_need(const char *value, const char *op, const char *what,
                       kms_error *err)
{
	if (!value || !value[0])
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: %s is required", op, what);
	return KMS_OK;
}

void kms_free(void *p)
{
	free(p);
}

/* ---- request-building arena ---- */

struct client_arena_block {
	struct client_arena_block *next;
	size_t size;
	max_align_t data[];
};

void *client_arena_alloc(client_arena *arena, size_t size)
{
	if (size > SIZE_MAX - sizeof(struct client_arena_block))
		return NULL;
	struct client_arena_block *b = calloc(1, sizeof *b + (size ? size : 1));
	if (!b)
		return NULL;
	b->size = size;
	b->next = arena->blocks;
	arena->blocks = b;
	return b->data;
}

void client_arena_free(client_arena *arena)
{
	struct client_arena_block *b = arena->blocks;
	while (b) {
		struct client_arena_block *next = b->next;
		kms_wipe(b->data, b->size);
		free(b);
		b = next;
	}
	arena->blocks = NULL;
}

kms_status client_pairs(const kms_context_pair *pairs, size_t n, const char *what,
                        client_arena *arena, Kms__StringPair ***out, size_t *n_out,
                        kms_error *err)
{
	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return KMS_OK;
	if (!pairs)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: %zu pairs but no array", what, n);
	for (size_t i = 0; i < n; i++) {
		if (!pairs[i].key || !pairs[i].key[0] || !pairs[i].value)
			return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                   "%s: pair %zu has no key or no value", what, i);
		/* kmsd refuses a key given twice; say so before sending. The
		 * lists are small (tens of pairs). */
		for (size_t j = 0; j < i; j++) {
			if (strcmp(pairs[i].key, pairs[j].key) == 0) {
				char key[64];
				client_copy_clean(key, sizeof key, pairs[i].key);
				return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
				                   "%s: key \"%s\" given twice", what, key);
			}
		}
	}
	if (n > SIZE_MAX / sizeof(Kms__StringPair))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: too many pairs", what);
	Kms__StringPair *entries = client_arena_alloc(arena, n * sizeof *entries);
	Kms__StringPair **ptrs = client_arena_alloc(arena, n * sizeof *ptrs);
	if (!entries || !ptrs)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", what);
	for (size_t i = 0; i < n; i++) {
		kms__string_pair__init(&entries[i]);
		entries[i].key = client_lend(pairs[i].key);
		entries[i].value = client_lend(pairs[i].value);
		ptrs[i] = &entries[i];
	}
	*out = ptrs;
	*n_out = n;
	return KMS_OK;
}

/* ---- output copies ---- */

kms_status client_copy_key_id(char dst[KMS_KEY_ID_MAX + 1], const char *src,
                              kms_error *err)
{
	size_t len = src ? strlen(src) : 0;
	dst[0] = '\0';
	if (len > KMS_KEY_ID_MAX)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                   "answer carries a key id of %zu bytes (at most %d)",
		                   len, KMS_KEY_ID_MAX);
	client_copy_clean(dst, KMS_KEY_ID_MAX + 1, src);
	return KMS_OK;
}

kms_status client_dup_str(const char *src, char **out, kms_error *err)
{
	*out = strdup(src ? src : "");
	if (!*out)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	return KMS_OK;
}

kms_status client_dup_bytes(ProtobufCBinaryData src, uint8_t **out, size_t *out_len,
                            kms_error *err)
{
	*out = malloc(src.len ? src.len : 1);
	*out_len = 0;
	if (!*out)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	if (src.len)
		memcpy(*out, src.data, src.len);
	*out_len = src.len;
	return KMS_OK;
}

kms_status client_dup_secret(ProtobufCBinaryData src, uint8_t **out, size_t *out_len,
                             kms_error *err)
{
	*out = kms_secure_alloc(src.len ? src.len : 1);
	*out_len = 0;
	if (!*out)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "out of secure memory");
	if (src.len)
		memcpy(*out, src.data, src.len);
	*out_len = src.len;
	return KMS_OK;
}

/* ---- unpacking: every allocation is wiped before it is freed ---- */

#define WIPE_HEADER alignof(max_align_t)

static void *wipe_alloc(void *allocator_data, size_t size)
{
	(void)allocator_data;
	if (size > SIZE_MAX - WIPE_HEADER)
		return NULL;
	uint8_t *block = malloc(WIPE_HEADER + size);
	if (!block)
		return NULL;
	memcpy(block, &size, sizeof size);
	return block + WIPE_HEADER;
}

static void wipe_free(void *allocator_data, void *p)
{
	(void)allocator_data;
	if (!p)
		return;
	uint8_t *block = (uint8_t *)p - WIPE_HEADER;
	size_t size;
	memcpy(&size, block, sizeof size);
	kms_wipe(p, size);
	free(block);
}

static ProtobufCAllocator wiping_allocator = {
	.alloc = wipe_alloc,
	.free = wipe_free,
	.allocator_data = NULL,
};

void kms_response_free(Kms__Response *resp)
{
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, &wiping_allocator);
}

void client_msg_wipe_free(nng_msg *msg)
{
	if (!msg)
		return;
	kms_wipe(nng_msg_body(msg), nng_msg_len(msg));
	nng_msg_free(msg);
}

/* ---- open and close ---- */

static int scheme_is(const char *scheme, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(scheme, *names) == 0)
			return 1;
	return 0;
}

static const char *const ipc_schemes[] = { "ipc", NULL };
static const char *const tls_schemes[] = { "tls+tcp", "tls+tcp4", "tls+tcp6", NULL };
static const char *const tcp_schemes[] = { "tcp", "tcp4", "tcp6", NULL };

/* Reads a whole (small) file into secure memory, NUL-terminated: PEM keys. */
static kms_status read_pem(const char *path, char **out, kms_error *err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "cannot read %s: %s", path, strerror(errno));
	char *pem = kms_secure_alloc(CLIENT_PEM_MAX + 1);
	if (!pem) {
		fclose(f);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "out of secure memory");
	}
	size_t len = fread(pem, 1, CLIENT_PEM_MAX + 1, f);
	int failed = ferror(f);
	fclose(f);
	if (failed || len == 0 || len > CLIENT_PEM_MAX) {
		kms_secure_free(pem);
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: %s", path, failed ? "read error" :
		                   len == 0 ? "empty" : "too large for a PEM file");
	}
	pem[len] = '\0';
	*out = pem;
	return KMS_OK;
}

/* The name kmsd's certificate must carry: --server-name, or the URL's host. */
static const char *tls_server_name(const kms_client_options *opts, const nng_url *url)
{
	return opts->tls_server_name ? opts->tls_server_name : url->u_hostname;
}

static kms_status tls_config_for(const kms_client_options *opts, const nng_url *url,
                                 nng_tls_config **out, kms_error *err)
{
	nng_tls_config *cfg = NULL;
	char *cert = NULL, *key = NULL;
	kms_status st = KMS_OK;
	int rv;

	*out = NULL;
	if (!opts->tls_ca_file)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s needs a CA file to check kmsd's certificate",
		                   url->u_rawurl);
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "TLS: %s", nng_strerror(rv));
	const char *server_name = tls_server_name(opts, url);
	if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_server_name(cfg, server_name)) != 0) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "TLS: %s",
		                 nng_strerror(rv));
		goto out;
	}
	if ((rv = nng_tls_config_ca_file(cfg, opts->tls_ca_file)) != 0) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "TLS CA file %s: %s", opts->tls_ca_file, nng_strerror(rv));
		goto out;
	}
	if (opts->tls_cert_file && opts->tls_key_file) {
		KMS_GUARD_OUT(st, read_pem(opts->tls_cert_file, &cert, err));
		KMS_GUARD_OUT(st, read_pem(opts->tls_key_file, &key, err));
		rv = nng_tls_config_own_cert(cfg, cert, key, NULL);
	} else if (opts->tls_cert_file) {
		/* One file holding both the certificate and its key. */
		rv = nng_tls_config_cert_key_file(cfg, opts->tls_cert_file, NULL);
	} else if (opts->tls_key_file) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "TLS key file %s given without a certificate",
		                 opts->tls_key_file);
		goto out;
	}
	if (rv != 0) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "TLS certificate %s / key %s: %s", opts->tls_cert_file,
		                 opts->tls_key_file ? opts->tls_key_file : "(same file)",
		                 nng_strerror(rv));
		goto out;
	}
	*out = cfg;
	cfg = NULL;
out:
	kms_secure_free(cert);
	kms_secure_free(key);
	if (cfg)
		nng_tls_config_free(cfg);
	return st;
}

static kms_status dial(kms_client *c, const kms_client_options *opts,
                       const char *endpoint, size_t max_response, kms_error *err)
{
	nng_url *url = NULL;
	nng_dialer dialer;
	nng_tls_config *tls = NULL;
	const char *ipc_path = NULL; /* in url */
	kms_status st = KMS_OK;
	int rv;

	if (!endpoint || (rv = nng_url_parse(&url, endpoint)) != 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "bad endpoint URL \"%s\"", endpoint ? endpoint : "");
	if (scheme_is(url->u_scheme, tls_schemes)) {
		KMS_GUARD_OUT(st, tls_config_for(opts, url, &tls, err));
	} else if (scheme_is(url->u_scheme, tcp_schemes)) {
		if (!opts->insecure_plain_tcp) {
			st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                 "%s: plain tcp:// carries keys in the clear; "
			                 "use tls+tcp:// (or the insecure development flag)",
			                 endpoint);
			goto out;
		}
	} else if (scheme_is(url->u_scheme, ipc_schemes)) {
		ipc_path = url->u_path;
		if (!ipc_path[0] || strlen(ipc_path) >= CLIENT_IPC_PATH_MAX ||
		    strlen(endpoint) >= CLIENT_IPC_URL_MAX) {
			st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                 "%s: an ipc:// path is 1..%d bytes",
			                 endpoint, CLIENT_IPC_PATH_MAX - 1);
			goto out;
		}
		/* Who owns the socket file, before a byte goes to it. */
		KMS_GUARD_OUT(st, client_ipc_check_path(c, ipc_path, err));
	} else {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "%s: kms speaks ipc:// and tls+tcp://, not %s://",
		                 endpoint, url->u_scheme);
		goto out;
	}
	if ((rv = nng_dialer_create(&dialer, c->socket, endpoint)) != 0) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "%s: %s", endpoint, nng_strerror(rv));
		goto out;
	}
	/* And who listens, on every connection (client_ipc.c). */
	if (ipc_path && (st = client_ipc_add(c, dialer, endpoint, ipc_path, err)) != KMS_OK) {
		nng_dialer_close(dialer);
		goto out;
	}
	/* What its handshake uses, to say why it fails (client_tls.c). */
	if (tls && (st = client_tls_add(c, url, opts, tls_server_name(opts, url),
	                                err)) != KMS_OK) {
		nng_dialer_close(dialer);
		goto out;
	}
	c->n_endpoints++;
	if ((rv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, max_response)) != 0 ||
	    (tls && (rv = nng_dialer_set_ptr(dialer, NNG_OPT_TLS_CONFIG, tls)) != 0) ||
	    /* Non-blocking: a down endpoint is retried in the background and
	     * neither blocks nor fails the open. */
	    (rv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
		nng_dialer_close(dialer);
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: %s",
		                 endpoint, nng_strerror(rv));
		goto out;
	}
out:
	if (tls)
		nng_tls_config_free(tls); /* the dialer holds its own reference */
	nng_url_free(url);
	return st;
}

static void describe_endpoints(kms_client *c, const char *const *endpoints, size_t n)
{
	size_t used = 0;
	c->endpoints_text[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(c->endpoints_text + used, sizeof c->endpoints_text - used,
		                 "%s%s", i ? ", " : "", endpoints[i]);
		if (w < 0 || (size_t)w >= sizeof c->endpoints_text - used)
			break; /* truncated: it is for humans */
		used += (size_t)w;
	}
}

kms_status kms_client_open(const kms_client_options *opts, kms_client **out,
                           kms_error *err)
{
	static const char *const default_endpoints[] = { KMS_CLIENT_DEFAULT_ENDPOINT };
	kms_status st = KMS_OK;
	kms_client *c = NULL;
	int rv;

	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_open: out is required");
	*out = NULL;
	if (!opts)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_open: options are required");
	const char *const *endpoints = opts->endpoints;
	size_t n_endpoints = opts->n_endpoints;
	if (!endpoints || n_endpoints == 0) {
		endpoints = default_endpoints;
		n_endpoints = 1;
	}
	if (n_endpoints > KMS_CLIENT_MAX_ENDPOINTS)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%zu endpoints; at most %d", n_endpoints,
		                   KMS_CLIENT_MAX_ENDPOINTS);
	if (opts->timeout_ms < 0 || opts->resend_ms < 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "timeout and resend time must not be negative");
	if (opts->access_key_id && (!opts->access_key_id[0] || !opts->access_key_secret))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "an access key needs both an id and a secret");

	kms_credentials creds;
	const char *access_key_id;
	const uint8_t *secret;
	KMS_GUARD(client_credentials_pick(opts, &creds, &access_key_id, &secret, err));
	c = calloc(1, sizeof *c);
	if (!c) {
		kms_credentials_free(&creds);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	}
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : KMS_CLIENT_DEFAULT_TIMEOUT_MS;
	c->resend_ms = opts->resend_ms;
	c->own_uid = (uint64_t)getuid();
	c->service_uid = client_ipc_service_uid();
	c->server_uid = opts->server_uid;
	describe_endpoints(c, endpoints, n_endpoints);
	if (access_key_id) {
		c->access_key_id = strdup(access_key_id);
		c->secret = kms_secure_alloc(KMS_SIGN_SECRET_LEN);
		if (!c->access_key_id || !c->secret) {
			free(c->access_key_id);
			kms_secure_free(c->secret);
			free(c);
			kms_credentials_free(&creds);
			return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		}
		memcpy(c->secret, secret, KMS_SIGN_SECRET_LEN);
	}
	kms_credentials_free(&creds); /* the client holds its own copy */
	if ((rv = nng_req0_open(&c->socket)) != 0) {
		free(c->access_key_id);
		kms_secure_free(c->secret);
		free(c);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "cannot open a REQ socket: %s", nng_strerror(rv));
	}
	size_t max_response = opts->max_response_bytes ? opts->max_response_bytes
	                                               : KMS_CLIENT_DEFAULT_MAX_RESPONSE;
	nng_duration resend = c->resend_ms > 0 ? c->resend_ms : NNG_DURATION_INFINITE;
	if ((rv = nng_socket_set_size(c->socket, NNG_OPT_RECVMAXSZ, max_response)) != 0 ||
	    (rv = nng_socket_set_ms(c->socket, NNG_OPT_REQ_RESENDTIME, resend)) != 0) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "socket options: %s",
		                 nng_strerror(rv));
		goto out;
	}
	if ((rv = nng_mtx_alloc(&c->async_once)) != 0) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	KMS_GUARD_OUT(st, client_ipc_watch(c, err));
	for (size_t i = 0; i < n_endpoints; i++)
		KMS_GUARD_OUT(st, dial(c, opts, endpoints[i], max_response, err));
	*out = c;
	c = NULL;
out:
	kms_client_close(c);
	return st;
}

/* How long kms_client_close waits for NNG (common/nng_close.h). */
#define CLIENT_CLOSE_WAIT_MS 2000

void kms_client_close(kms_client *client)
{
	if (!client)
		return;
	/* Calls in flight first: their callbacks run (canceled) and return
	 * before the socket goes. */
	bool drained = client_async_close(client, CLIENT_CLOSE_WAIT_MS);
	bool closed = kms_nng_close_bounded(client->socket, CLIENT_CLOSE_WAIT_MS) && drained;
	if (client->async_once && drained)
		nng_mtx_free(client->async_once);
	client_tls_free(client);
	free(client->access_key_id);
	kms_secure_free(client->secret); /* wiped either way */
	client->access_key_id = NULL;
	client->secret = NULL;
	if (closed)
		free(client);
	/* else: NNG 1.5.2 hung in nng_close; its thread may still touch the
	 * socket, so the small struct is left allocated rather than freed. */
}

/* ---- one exchange ---- */

nng_duration client_resend_time(const kms_client *c)
{
	return c->resend_ms > 0 ? c->resend_ms : NNG_DURATION_INFINITE;
}

kms_status client_transport_error(kms_client *c, int rv, kms_error *err)
{
	switch (rv) {
	case NNG_ETIMEDOUT:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "no answer from %s within %d ms: is kmsd running?",
		                   c->endpoints_text, c->timeout_ms);
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "connection to %s lost before the answer came "
		                   "(the request may or may not have been done)",
		                   c->endpoints_text);
	default:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "%s: %s", c->endpoints_text, nng_strerror(rv));
	}
}

/* The bound on each step (connect, each read and write) of the diagnostic
 * handshake after a failed call. */
#define CLIENT_TLS_DIAGNOSE_MS 2000

/* client_transport_error, unless a tls+tcp:// endpoint's statistics say better
 * why nothing came: a handshake that failed, a connection refused. */
static kms_status transport_failure(kms_client *c, int rv, kms_error *err)
{
	if (rv != NNG_ETIMEDOUT)
		return client_transport_error(c, rv, err);
	int budget = c->timeout_ms < CLIENT_TLS_DIAGNOSE_MS ? c->timeout_ms
	                                                    : CLIENT_TLS_DIAGNOSE_MS;
	if (client_tls_failure(c, budget, err))
		return KMS_UNAVAILABLE;
	return client_transport_error(c, rv, err);
}

/* Sends request (always consumed) and waits for the answer, all within the
 * client's timeout, on a context of its own so threads do not mix answers. */
static kms_status exchange(kms_client *c, nng_msg *request, nng_msg **answer,
                           kms_error *err)
{
	nng_ctx ctx;
	nng_aio *aio = NULL;
	kms_status st = KMS_OK;
	int rv;

	*answer = NULL;
	if ((rv = nng_ctx_open(&ctx, c->socket)) != 0) {
		client_msg_wipe_free(request);
		return client_transport_error(c, rv, err);
	}
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		client_msg_wipe_free(request);
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	(void)nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, client_resend_time(c));

	nng_time deadline = nng_clock() + (nng_time)c->timeout_ms;
	/* No connection yet and only ipc:// endpoints: a missing socket or one
	 * nobody listens on fails now, not after the timeout (client_ipc.c). */
	if (client_ipc_all_down(c, c->timeout_ms, err)) {
		client_msg_wipe_free(request);
		st = KMS_UNAVAILABLE;
		goto out;
	}
	nng_time now = nng_clock();
	/* REQ finishes a send once a connected pipe takes the request: with no
	 * daemon up, it is the send that times out. */
	nng_aio_set_msg(aio, request);
	nng_aio_set_timeout(aio, now < deadline ? (nng_duration)(deadline - now) : 1);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		client_msg_wipe_free(nng_aio_get_msg(aio)); /* still ours on failure */
		/* Not sent because the only peers were refused for their uid
		 * (client_ipc.c): say that rather than "is kmsd running?". */
		st = client_ipc_refusal(c, err) ? KMS_UNAVAILABLE
		                                : transport_failure(c, rv, err);
		goto out;
	}
	now = nng_clock();
	if (now >= deadline) {
		st = client_transport_error(c, NNG_ETIMEDOUT, err);
		goto out;
	}
	nng_aio_set_timeout(aio, (nng_duration)(deadline - now));
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		st = client_transport_error(c, rv, err);
		goto out;
	}
	*answer = nng_aio_get_msg(aio);
out:
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return st;
}

/* Packs req into a fresh message. */
static kms_status pack_request(const Kms__Request *req, nng_msg **out, kms_error *err)
{
	size_t len = protobuf_c_message_get_packed_size(&req->base);
	nng_msg *msg;
	*out = NULL;
	if (nng_msg_alloc(&msg, len) != 0)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	if (protobuf_c_message_pack(&req->base, nng_msg_body(msg)) != len) {
		client_msg_wipe_free(msg);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "cannot pack the request");
	}
	*out = msg;
	return KMS_OK;
}

/* The kernel's generator, not OpenSSL's: asynchronous calls made from a
 * completion run on NNG's threads, and OpenSSL would give each of those a
 * generator of its own that outlives the thread (NNG's threads end in
 * nng_fini). A request id needs uniqueness, not secrecy. */
static bool random_bytes(uint8_t *out, size_t len)
{
	while (len > 0) {
		ssize_t n = getrandom(out, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		out += n;
		len -= (size_t)n;
	}
	return true;
}

static kms_status new_request_id(char id[CLIENT_REQUEST_ID_LEN + 1], kms_error *err)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t random[CLIENT_REQUEST_ID_RANDOM];
	if (!random_bytes(random, sizeof random))
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "no randomness for a request id");
	id[0] = 'r';
	id[1] = '-';
	for (size_t i = 0; i < sizeof random; i++) {
		id[2 + 2 * i] = hex[random[i] >> 4];
		id[3 + 2 * i] = hex[random[i] & 0x0f];
	}
	id[CLIENT_REQUEST_ID_LEN] = '\0';
	return KMS_OK;
}

/*
 * The request as sent: req's fields, with a fresh id when it has none, the
 * current schema version when it says 0, and a credential when the client
 * has an access key and req has none. send is a shallow copy; id, cred and
 * mac are its storage.
 */
static kms_status complete_request(kms_client *c, const Kms__Request *req,
                                   Kms__Request *send,
                                   char id[CLIENT_REQUEST_ID_LEN + 1],
                                   Kms__Credential *cred,
                                   uint8_t mac[KMS_SIGN_MAC_LEN], kms_error *err)
{
	*send = *req;
	if (!send->request_id || !send->request_id[0]) {
		KMS_GUARD(new_request_id(id, err));
		send->request_id = id;
	}
	if (send->schema_version == 0)
		send->schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	if (c->access_key_id && !send->credential) {
		int64_t now = (int64_t)time(NULL);
		kms_status st = kms_sign_request_mac(send, c->secret, now, mac);
		if (st != KMS_OK)
			return client_fail(err, st, KMS_ERROR_LOCAL,
			                   "cannot sign the request (%s)",
			                   kms_status_name(st));
		kms__credential__init(cred);
		cred->access_key_id = c->access_key_id;
		cred->timestamp_unix = now;
		cred->mac.data = mac;
		cred->mac.len = KMS_SIGN_MAC_LEN;
		send->credential = cred;
	}
	return KMS_OK;
}

/* kms_last_request_id's: this thread's last request id. */
static _Thread_local char last_request_id[KMS_SIGN_REQUEST_ID_MAX + 1];

const char *kms_last_request_id(void)
{
	return last_request_id;
}

kms_status client_request_pack(kms_client *c, const Kms__Request *req, nng_msg **out,
                               char id[CLIENT_REQUEST_ID_LEN + 1], const char **sent_id,
                               kms_error *err)
{
	uint8_t mac[KMS_SIGN_MAC_LEN];
	Kms__Credential cred;
	Kms__Request send;

	*out = NULL;
	*sent_id = NULL;
	if (!c || !req)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "a client and a request are required");
	KMS_GUARD(complete_request(c, req, &send, id, &cred, mac, err));
	kms_status st = pack_request(&send, out, err);
	kms_wipe(mac, sizeof mac);
	if (st == KMS_OK) {
		*sent_id = send.request_id; /* req's own, or id */
		snprintf(last_request_id, sizeof last_request_id, "%s", send.request_id);
	}
	return st;
}

kms_status client_answer_unpack(kms_client *c, nng_msg *answer, const char *request_id,
                                Kms__Response **resp, kms_error *err)
{
	*resp = NULL;
	Kms__Response *r = (Kms__Response *)protobuf_c_message_unpack(
		&kms__response__descriptor, &wiping_allocator, nng_msg_len(answer),
		nng_msg_body(answer));
	size_t answer_len = nng_msg_len(answer);
	client_msg_wipe_free(answer);
	if (!r)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                   "the answer from %s is not a kms response (%zu bytes)",
		                   c->endpoints_text, answer_len);
	/* kmsd answers a request it could not read with an empty id and an
	 * error: that answer is for us, and its message says what was wrong. */
	bool unread = !r->request_id[0] && r->status != KMS__STATUS__OK;
	if (!unread && strcmp(r->request_id, request_id) != 0) {
		char got[KMS_SIGN_REQUEST_ID_MAX + 1];
		client_copy_clean(got, sizeof got, r->request_id);
		kms_response_free(r);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                   "the answer from %s is for request \"%s\", not %s",
		                   c->endpoints_text, got, request_id);
	}
	if (r->schema_version != 0 &&
	    r->schema_version != KMS__SCHEMA_VERSION__SCHEMA_VERSION) {
		uint32_t version = r->schema_version;
		kms_response_free(r);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                   "the answer from %s speaks schema version %" PRIu32
		                   "; this client speaks %d", c->endpoints_text,
		                   version, KMS__SCHEMA_VERSION__SCHEMA_VERSION);
	}
	*resp = r;
	return KMS_OK;
}

/* The whole round trip of kms_client_call, with the answer's status left to
 * the caller: KMS_OK means a valid answer to this request is in *resp. */
static kms_status call(kms_client *c, const Kms__Request *req, Kms__Response **resp,
                       kms_error *err)
{
	char id[CLIENT_REQUEST_ID_LEN + 1];
	const char *sent_id;
	nng_msg *request = NULL, *answer = NULL;

	*resp = NULL;
	KMS_GUARD(client_request_pack(c, req, &request, id, &sent_id, err));
	KMS_GUARD(exchange(c, request, &answer, err));
	return client_answer_unpack(c, answer, sent_id, resp, err);
}

/* The server's verdict as a kms_status, with its message in err. */
kms_status client_server_status(const Kms__Response *r, kms_error *err)
{
	if (r->status == KMS__STATUS__OK)
		return KMS_OK;
	kms_status st = kms_status_from_wire((int)r->status);
	char message[KMS_ERROR_MESSAGE_MAX];
	client_copy_clean(message, sizeof message, r->message);
	if (st == KMS_INTERNAL && (int)r->status != KMS_INTERNAL)
		return client_fail(err, st, KMS_ERROR_SERVER,
		                   "kmsd answered with unknown status %d: %s",
		                   (int)r->status, message);
	if (st == KMS_THROTTLED && err)
		err->retry_after_ms = r->retry_after_ms;
	if (!message[0] && st == KMS_THROTTLED)
		return client_fail(err, st, KMS_ERROR_SERVER, "kmsd said THROTTLED: retry after "
		                   "%" PRIu32 " ms", r->retry_after_ms);
	if (!message[0])
		return client_fail(err, st, KMS_ERROR_SERVER, "kmsd said %s",
		                   kms_status_name(st));
	return client_fail(err, st, KMS_ERROR_SERVER, "%s", message);
}

kms_status kms_client_call(kms_client *client, const Kms__Request *req,
                           Kms__Response **resp, kms_error *err)
{
	client_error_clear(err);
	if (!resp)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_call: resp is required");
	KMS_GUARD(call(client, req, resp, err));
	return client_server_status(*resp, err);
}

kms_status client_roundtrip(kms_client *client, Kms__Request *req,
                            Kms__Response__ResultCase expect,
                            Kms__Response **resp, kms_error *err)
{
	Kms__Response *r;
	const char *op = kms_sign_operation_name(req);

	*resp = NULL;
	KMS_GUARD(call(client, req, &r, err));
	kms_status st = client_server_status(r, err);
	if (st != KMS_OK) {
		kms_response_free(r);
		return st;
	}
	/* The result must be the one for this operation, and present. */
	const ProtobufCFieldDescriptor *f = r->result_case == expect ?
		protobuf_c_message_descriptor_get_field(&kms__response__descriptor,
		                                        (unsigned)expect) : NULL;
	const ProtobufCMessage *result = NULL;
	if (f)
		memcpy(&result, (const uint8_t *)r + f->offset, sizeof result);
	if (!result) {
		int got = (int)r->result_case;
		kms_response_free(r);
		char what[64];
		snprintf(what, sizeof what, "status OK but result field %d, not %d",
		         got, (int)expect);
		return client_protocol_error(err, op ? op : "request", what);
	}
	*resp = r;
	return KMS_OK;
}

kms_status kms_client_call_bytes(kms_client *client, const uint8_t *req, size_t req_len,
                                 uint8_t **resp, size_t *resp_len, kms_error *err)
{
	nng_msg *request, *answer;

	client_error_clear(err);
	if (!client || (!req && req_len) || !resp || !resp_len)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_call_bytes: missing argument");
	*resp = NULL;
	*resp_len = 0;
	if (nng_msg_alloc(&request, req_len) != 0)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	if (req_len)
		memcpy(nng_msg_body(request), req, req_len);
	KMS_GUARD(exchange(client, request, &answer, err));
	size_t len = nng_msg_len(answer);
	if (len) {
		*resp = malloc(len);
		if (!*resp) {
			client_msg_wipe_free(answer);
			return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		}
		memcpy(*resp, nng_msg_body(answer), len);
	}
	*resp_len = len;
	client_msg_wipe_free(answer);
	return KMS_OK;
}
