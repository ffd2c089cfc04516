/*
 * test_slow_peer: a TLS peer that pipelines requests and never reads its
 * replies, against a real kmsd on a real SoftHSM token over real TLS.
 *
 * It used to hold every worker in nng_ctx_send until it disconnected, so no
 * other client was served, and SIGTERM hung more than 41 s with it
 * connected. The peer here is a raw client (OpenSSL, a client certificate,
 * NNG's SP framing by hand, a 4 KiB receive buffer) that sends 300
 * DescribeKey requests for a key whose answer is about 20 KB, and reads
 * nothing.
 *
 * (1) others_served_and_peer_dropped: with reply_send_timeout_ms = 250,
 *     ipc clients are answered within 1 s each while the peer floods, kmsd
 *     logs that it dropped the peer, and the peer's connection ends (it
 *     reads EOF, not 300 replies).
 * (2) sigterm_with_slow_peer: with the default 5000 ms, once every TLS
 *     REP context is stuck on such a peer (700 requests; a TLS Health goes
 *     unanswered for 500 ms; ipc has workers of its own and keeps answering),
 *     SIGTERM exits 0 within 5 s + the socket close's 3 s + 2 s of margin.
 * (3) connections_capped: with max_tls_connections = 2, a third TLS
 *     connection is closed at once while the first two are served.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <kms/limits.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/sp_raw.h"

#define FLOOD 300
/* sigterm_with_slow_peer's flood: more requests than kmsd's 256 REP
 * contexts plus the replies the kernel's socket buffers take (~200 of
 * ~20 KB at the usual 4 MiB), so that every context holds a reply the
 * peer does not take; still only ~80 KB of requests. */
#define STALL_FLOOD 700
#define FAT_REPLY_MIN 19000 /* bytes of one DescribeKey answer, at least */
#define FAST_TIMEOUT_MS 250
/* The bounds below are kmsd's promises on this machine; under valgrind
 * (scripts/valgrind) kmsd runs harness_time_scale() times slower, and they
 * stretch with it. */
#define SERVED_WITHIN_MS ((int64_t)1000 * harness_time_scale())
#define DROP_DEADLINE_MS (10000 * harness_time_scale())
#define STALL_PROBE_MS (500 * harness_time_scale())
#define DROP_LINE "was not taken within 250 ms: connection closed"
#define DRAIN_BOUND_MS ((5000 + 3000 + 2000) * harness_time_scale())
/* The raw peer's socket timeouts: a bound, never an expectation (no check
 * here waits for one to pass), so generous: connections_capped's first
 * raw_open once failed in a loaded full run with 3 s, a handshake slower
 * than that on a busy 2-core machine being the likely cause. */
#define IO_TIMEOUT_S 15

static harness H;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct raw_peer {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
} raw_peer;

static void raw_close(raw_peer *p)
{
	if (p->ssl)
		SSL_free(p->ssl);
	if (p->ctx)
		SSL_CTX_free(p->ctx);
	if (p->fd >= 0)
		close(p->fd);
	memset(p, 0, sizeof *p);
	p->fd = -1;
}

static bool write_all(raw_peer *p, const uint8_t *b, size_t n)
{
	while (n) {
		int w = SSL_write(p->ssl, b, (int)n);
		if (w <= 0)
			return false;
		b += w;
		n -= (size_t)w;
	}
	return true;
}

static bool read_exact(raw_peer *p, uint8_t *b, size_t n)
{
	while (n) {
		int r = SSL_read(p->ssl, b, (int)n);
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

/* TCP with a small receive buffer, TLS with the test client certificate,
 * then NNG's SP header exchange as a REQ peer. */
static bool raw_open(raw_peer *p)
{
	char path[700], key[700];
	struct timeval tv = { IO_TIMEOUT_S, 0 };
	int small = 4096;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)H.tls_port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	memset(p, 0, sizeof *p);
	p->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (p->fd < 0)
		return false;
	setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(p->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		return false;
	p->ctx = SSL_CTX_new(TLS_client_method());
	snprintf(path, sizeof path, "%s/tls/client.crt", H.dir);
	snprintf(key, sizeof key, "%s/tls/client.key", H.dir);
	if (!p->ctx || SSL_CTX_use_certificate_file(p->ctx, path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(p->ctx, key, SSL_FILETYPE_PEM) != 1)
		return false;
	snprintf(path, sizeof path, "%s/tls/ca.crt", H.dir);
	if (SSL_CTX_load_verify_locations(p->ctx, path, NULL) != 1)
		return false;
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
	p->ssl = SSL_new(p->ctx);
	if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1 || SSL_connect(p->ssl) != 1)
		return false;
	uint8_t theirs[8];
	if (!write_all(p, sp_raw_req_hello, sizeof sp_raw_req_hello))
		return false;
	return read_exact(p, theirs, sizeof theirs) && theirs[1] == 'S' && theirs[2] == 'P';
}

/* One REQ message: 8-byte length, 4-byte request id (high bit set), body. */
static bool raw_send(raw_peer *p, uint32_t id, const uint8_t *body, size_t n)
{
	uint8_t head[SP_RAW_REQ_HEAD];
	sp_raw_req_head(head, id, n);
	return write_all(p, head, sizeof head) && write_all(p, body, n);
}

/* Reads until the connection ends or IO_TIMEOUT_S passes without a byte;
 * returns true when it ended (EOF or reset), with the bytes read. */
static bool raw_ends(raw_peer *p, size_t *read_bytes)
{
	uint8_t buf[16384];
	*read_bytes = 0;
	int64_t deadline = now_ms() + 30000;
	while (now_ms() < deadline) {
		int r = SSL_read(p->ssl, buf, sizeof buf);
		if (r > 0) {
			*read_bytes += (size_t)r;
			continue;
		}
		int e = SSL_get_error(p->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN)
			return true;
		if (e == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET || errno == EPIPE))
			return true;
		if (e == SSL_ERROR_SSL)
			return true;
		return false; /* timed out: still open */
	}
	return false;
}

static char fat_key[35]; /* a key whose DescribeKey answer is ~20 KB */

/* A key with the most and longest tags and description the schema allows,
 * so that each DescribeKey reply is about 20 KB: 300 of them (6 MB) are
 * more than the kernel buffers between kmsd and a peer that reads nothing
 * (tcp_wmem's 4 MB at most). */
static void make_fat_key(void)
{
	static char tag_keys[KMS_TAGS_MAX][KMS_TAG_KEY_MAX + 1];
	static char tag_value[KMS_TAG_VALUE_MAX + 1];
	static char description[KMS_DESCRIPTION_MAX + 1];
	Kms__StringPair pairs[KMS_TAGS_MAX], *tags[KMS_TAGS_MAX];
	memset(tag_value, 'v', KMS_TAG_VALUE_MAX);
	memset(description, 'd', KMS_DESCRIPTION_MAX);
	for (unsigned i = 0; i < KMS_TAGS_MAX; i++) {
		memset(tag_keys[i], 'k', KMS_TAG_KEY_MAX);
		tag_keys[i][0] = (char)('0' + i / 10); /* distinct: "00kkk...", "01kkk..." */
		tag_keys[i][1] = (char)('0' + i % 10);
		kms__string_pair__init(&pairs[i]);
		pairs[i].key = tag_keys[i];
		pairs[i].value = tag_value;
		tags[i] = &pairs[i];
	}
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = description;
	ck.n_tags = KMS_TAGS_MAX;
	ck.tags = tags;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create the fat key: %d %s", r->status, r->message);
	snprintf(fat_key, sizeof fat_key, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

static uint8_t *describe_request(uint32_t n, size_t *len)
{
	Kms__DescribeKeyRequest d = KMS__DESCRIBE_KEY_REQUEST__INIT;
	d.key_id = fat_key;
	Kms__Request req = KMS__REQUEST__INIT;
	char id[32];
	snprintf(id, sizeof id, "flood-%u", n);
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = id;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
	req.describe_key = &d;
	Kms__Credential cred; /* over tls+tcp:// every request is signed */
	uint8_t mac[32];
	assert_true(harness_sign(&H, &req, (int64_t)time(NULL), &cred, mac));
	*len = kms__request__get_packed_size(&req);
	uint8_t *b = malloc(*len);
	assert_non_null(b);
	kms__request__pack(&req, b);
	return b;
}

static void flood(raw_peer *p, uint32_t requests)
{
	for (uint32_t i = 0; i < requests; i++) {
		size_t n = 0;
		uint8_t *b = describe_request(i, &n);
		bool sent = raw_send(p, i + 1, b, n);
		free(b);
		if (!sent)
			fail_msg("flood: request %u not sent", i);
	}
}

/* Whether a Health request on a fresh TLS connection is answered in time
 * (TLS requests share the stuck workers; ipc has workers of its own). */
static bool health_answers_within(int ms)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = "stall-probe";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	nng_socket s;
	if (!harness_tls_socket(&H, true, &s))
		return false;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, ms);
	Kms__Response *r = harness_call_on(&H, s, &req);
	bool answered = r != NULL;
	if (r)
		kms__response__free_unpacked(r, NULL);
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return answered;
}

static void others_served_and_peer_dropped(void **state)
{
	(void)state;
	char extra[128];
	snprintf(extra, sizeof extra, "[limits]\nreply_send_timeout_ms = %d\n", FAST_TIMEOUT_MS);
	harness_options o = { .with_tls = true, .workers = 4, .extra_config = extra };
	assert_true(harness_start(&H, &o));
	make_fat_key();
	raw_peer p;
	assert_true(raw_open(&p));
	flood(&p, FLOOD);
	/* Other clients are served while kmsd stalls on the peer, until kmsd
	 * says it dropped it (the event), within a bounded time. */
	int64_t worst = 0, deadline = now_ms() + DROP_DEADLINE_MS;
	unsigned calls = 0;
	bool dropped = false;
	while (!dropped && now_ms() < deadline) {
		int64_t took = (int64_t)e2e_health_ms(&H);
		if (took > worst)
			worst = took;
		calls++;
		dropped = harness_log_contains(&H, DROP_LINE);
	}
	size_t got = 0;
	bool ended = raw_ends(&p, &got);
	printf("# %d pipelined DescribeKey (~20 KB answers) unread: other clients answered "
	       "within %lld ms (worst of %u); kmsd %s the peer, whose connection %s after "
	       "%zu reply bytes\n", FLOOD, (long long)worst, calls,
	       dropped ? "dropped" : "did NOT drop", ended ? "ended" : "did NOT end", got);
	assert_true(dropped);
	assert_true(worst < SERVED_WITHIN_MS);
	assert_true(ended);
	assert_true(got < (size_t)FLOOD * FAT_REPLY_MIN);
	raw_close(&p);
	assert_int_equal(harness_stop(&H), 0);
}

static void sigterm_with_slow_peer(void **state)
{
	(void)state;
	/* Its event, every REP context held by the peer's unread replies, needs
	 * kmsd to fill all 256 faster than reply_send_timeout_ms frees them;
	 * under valgrind (scripts/valgrind) it is 20 times slower and never does.
	 * The drain itself is the same code as in others_served_and_peer_dropped. */
	if (getenv("KMS_TEST_KMSD_WRAPPER")) {
		print_message("# skipped under %s: kmsd is too slow there to hold every context\n",
		              getenv("KMS_TEST_KMSD_WRAPPER"));
		skip();
	}
	harness_options o = { .with_tls = true, .workers = 4 };
	assert_true(harness_start(&H, &o));
	make_fat_key();
	raw_peer p;
	assert_true(raw_open(&p));
	flood(&p, STALL_FLOOD);
	/* The event: kmsd no longer answers others over TLS, every REP context
	 * being stuck on the peer's replies. */
	bool stalled = false;
	int64_t deadline = now_ms() + DROP_DEADLINE_MS;
	while (!stalled && now_ms() < deadline)
		stalled = !health_answers_within(STALL_PROBE_MS);
	assert_true(stalled);
	assert_true((int64_t)e2e_health_ms(&H) < SERVED_WITHIN_MS); /* ipc is not held by the TLS peer */
	int64_t t0 = now_ms();
	int rc = harness_stop(&H);
	int64_t took = now_ms() - t0;
	printf("# SIGTERM with a peer that reads nothing: exit %d after %lld ms\n", rc,
	       (long long)took);
	assert_int_equal(rc, 0);
	assert_true(took < DRAIN_BOUND_MS);
	raw_close(&p);
}

static void connections_capped(void **state)
{
	(void)state;
	harness_options o = { .with_tls = true,
	                      .extra_config = "[limits]\nmax_tls_connections = 2\n" };
	assert_true(harness_start(&H, &o));
	raw_peer a, b, c;
	assert_true(raw_open(&a));
	assert_true(raw_open(&b));
	/* The third completes TLS and the SP header, then NNG's add-pipe hook
	 * closes it. */
	bool third = raw_open(&c);
	size_t got = 0;
	assert_true(!third || raw_ends(&c, &got));
	assert_int_equal(got, 0);
	assert_true(harness_log_contains(&H, "max_tls_connections = 2"));
	/* The first two are served. */
	raw_peer *served[2] = { &a, &b };
	for (int i = 0; i < 2; i++) {
		size_t n = 0;
		uint8_t *req = describe_request(1000 + (uint32_t)i, &n);
		assert_true(raw_send(served[i], 7, req, n));
		free(req);
		uint8_t head[12];
		assert_true(read_exact(served[i], head, sizeof head));
	}
	raw_close(&a);
	raw_close(&b);
	raw_close(&c);
	assert_int_equal(harness_stop(&H), 0);
}

/* A case that failed leaves its kmsd running: stop it, so the next case
 * starts its own. */
static int stop_kmsd(void **state)
{
	(void)state;
	if (H.pid > 0)
		(void)harness_stop(&H);
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(others_served_and_peer_dropped, stop_kmsd),
		cmocka_unit_test_teardown(sigterm_with_slow_peer, stop_kmsd),
		cmocka_unit_test_teardown(connections_capped, stop_kmsd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
