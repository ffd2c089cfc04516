/*
 * test_ipc_hostile: local users against kmsd's own ipc:// server
 * (kms/transport/ipc_server.h), the way each finding was made, against a
 * real kmsd on a real SoftHSM token over real unix sockets.
 *
 * Found with NNG's ipc listener: any local user could wedge it (every
 * ipc request timed out until a restart) by opening the socket and
 * closing it again a few times before the handshake, or by holding 1,100
 * connections with kmsd's file limit at 1024 (meanwhile clients got
 * "store: open ...kms.db: unable to open database file"); 200 unmapped
 * connections each announcing an 8 MiB message took kmsd to 1.65 GB RSS;
 * ~290 pipelined requests never read froze every worker, and SIGTERM hung
 * more than 41 s.
 *
 * The socket sits in a directory the attacking uids may enter (a
 * mkdtemp under /tmp, root:65534, 0750), with ipc_group = 65534. Each
 * attacker is a forked child that joins group 65534, drops to its uid and
 * speaks the SP framing by hand (NNG does not survive fork); the parent
 * (root, mapped as test-admin) tells it what to do and reads its counts
 * over pipes.
 *
 * (1) churn_then_a_mapped_client_is_served: 100 rounds of 5 silent and 5
 *     hello-only connections from an unmapped uid and 5 connections from
 *     a mapped one closed before kmsd's hello; after each round a mapped
 *     client on a fresh connection is answered within 1 s.
 * (2) held_connections_at_the_file_limit: with RLIMIT_NOFILE 1024 for
 *     kmsd, a mapped uid and an unmapped one open 1,100 connections each
 *     and hold them: kmsd keeps ipc_max_connections_per_uid of the first
 *     and none of the second, and CreateKey, Encrypt and Decrypt work
 *     meanwhile and after.
 * (3) unadmitted_and_stalled_peers_cost_little_memory: 200 unmapped and
 *     32 mapped connections each announce an 8 MiB message and send
 *     64 KiB: kmsd's RSS grows by less than 64 MiB, and the stalled ones
 *     are closed after ipc_read_timeout_ms (1000 here).
 * (4) a_peer_that_reads_nothing_is_dropped: 300 pipelined Encrypts never
 *     read: others are served within 1 s, the peer is dropped after
 *     reply_send_timeout_ms; with such a peer, SIGTERM exits 0 within 8 s.
 * (5) healthz_fails_when_ipc_does_not_answer: with the socket file
 *     removed, /healthz turns 503 "ipc endpoint unavailable", naming no
 *     path.
 *
 * Each case prints its figures on a "# " line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/sp_raw.h"

#define NOBODY 65534          /* unmapped; also the socket's group */
#define MAPPED_UID 1000       /* mapped by the cases that need a second uid */
#define MAPPED_LINE "[ipc_principals]\n1000 = mapped-user\n"
#define SKIPPED_EXIT_CODE 77
#define IO_TIMEOUT_S 5        /* any one blocking socket call of a child */
#define CHILD_REPORT_MS 40000 /* a child's answer to the parent, at most */
#define CHILDREN_MAX 2

/* (1) */
#define CHURN_ROUNDS 100
#define CHURN_EACH 5
#define CHURN_SERVED_MS 1000
#define CHURN_TOTAL_MS 45000
/* (2) */
#define FILE_LIMIT 1024
#define HELD 1100
#define PER_UID_CAP 32        /* kmsd's default ipc_max_connections_per_uid */
#define CLASSIFY_MS 10000
/* (3) */
#define UNMAPPED_BIG 200
#define MAPPED_BIG PER_UID_CAP
#define ANNOUNCED (8u << 20)
#define SENT_BODY (64u << 10)
#define RSS_GROWTH_MAX_KIB (64u << 10)
#define STALL_EOF_MS 30000
#define RSS_SAMPLE_MS 50
#define HEALTH_WITHIN_MS 2000 /* another client's Health while they stall */
/* (4) */
#define FLOOD 300
#define FLOOD_PLAINTEXT 4096
#define ENCRYPT_REPLY_MIN 4096 /* an Encrypt answer holds the whole ciphertext */
#define SEND_TIMEOUT_MS 1000
#define DROP_LINE "was not taken within 1000 ms: connection closed"
#define DROP_DEADLINE_MS 15000
#define SERVED_WITHIN_MS 1000
#define STALL_WAIT_MS 10000
#define STOP_BOUND_MS 8000     /* the default 5 s to take replies, and 3 s */
/* (5) */
#define HEALTHZ_503_MS 5000

static harness H;
static char g_sock_dir[64];
static char g_sock[128];
static char g_url[140];
static pid_t g_children[CHILDREN_MAX];
static struct rlimit g_nofile_before;
static bool g_nofile_changed;

/* ---- small helpers ---- */

static size_t health_request(uint8_t *out, size_t cap)
{
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "hostile-health";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	assert_true(kms__request__get_packed_size(&req) <= cap);
	return kms__request__pack(&req, out);
}

/* kmsd's resident set, in KiB, from /proc/<pid>/status. */
static unsigned long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r"); /* proc files have no size: read by line */
	assert_non_null(f);
	unsigned long kib = 0;
	bool found = false;
	for (int i = 0; !found && i < 100 && fgets(line, sizeof line, f); i++)
		found = sscanf(line, "VmRSS: %lu kB", &kib) == 1;
	fclose(f);
	assert_true(found);
	return kib;
}

/* ---- the attackers: forked children as other uids ---- */

typedef struct attacker {
	pid_t pid;
	int cmd; /* parent -> child: one byte per order; closed: finish */
	int res; /* child -> parent: counts */
} attacker;

typedef void (*attack_fn)(int cmd, int res, const void *arg);

/* Forks a child that joins the socket's group, becomes uid, ignores
 * SIGPIPE and runs fn, which ends it. */
static void attacker_start(attacker *a, uid_t uid, attack_fn fn, const void *arg)
{
	int to[2], from[2];
	assert_int_equal(pipe2(to, O_CLOEXEC), 0);
	assert_int_equal(pipe2(from, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		signal(SIGPIPE, SIG_IGN);
		const gid_t socket_group = NOBODY;
		if (setgroups(1, &socket_group) != 0 || setgid(uid) != 0 || setuid(uid) != 0)
			_exit(2);
		fn(to[0], from[1], arg);
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	*a = (attacker){ .pid = pid, .cmd = to[1], .res = from[0] };
	for (int i = 0; i < CHILDREN_MAX; i++)
		if (!g_children[i]) {
			g_children[i] = pid;
			break;
		}
}

static void attacker_order(attacker *a, char order)
{
	assert_int_equal(write(a->cmd, &order, 1), 1);
}

static void attacker_report(attacker *a, void *out, size_t n, const char *what)
{
	if (sp_raw_get_all(a->res, out, n, e2e_now_ms() + CHILD_REPORT_MS))
		return;
	int status = 0;
	pid_t gone = waitpid(a->pid, &status, WNOHANG);
	fail_msg("the %s child (pid %d) did not report within %d ms (%s %d); see %s", what,
	         (int)a->pid, CHILD_REPORT_MS, gone == a->pid ? "exit code" : "running",
	         gone == a->pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1, H.log);
}

/* Tells the child to finish, waits for it to exit (its end of the pipe
 * closing is the event, bounded) and reaps it. Returns its exit code. */
static int attacker_finish(attacker *a)
{
	close(a->cmd);
	uint8_t rest[64];
	uint64_t deadline = e2e_now_ms() + CHILD_REPORT_MS;
	bool ended = false;
	while (!ended && e2e_now_ms() < deadline) {
		struct pollfd pf = { .fd = a->res, .events = POLLIN };
		if (poll(&pf, 1, (int)(deadline - e2e_now_ms())) <= 0)
			continue;
		ended = read(a->res, rest, sizeof rest) <= 0;
	}
	close(a->res);
	if (!ended)
		kill(a->pid, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(a->pid, &status, 0), a->pid);
	for (int i = 0; i < CHILDREN_MAX; i++)
		if (g_children[i] == a->pid)
			g_children[i] = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* In a child: waits (bounded) for the parent's next order; 0 when the
 * pipe closed or nothing came. */
static char next_order(int cmd)
{
	char c = 0;
	return sp_raw_get_all(cmd, &c, 1, e2e_now_ms() + CHILD_REPORT_MS) ? c : 0;
}

/* ---- kmsd with a socket the attackers can reach ---- */

/* The socket's directory, and its path in g_sock. */
static void make_socket_dir(void)
{
	snprintf(g_sock_dir, sizeof g_sock_dir, "/tmp/kms-hostile-XXXXXX");
	assert_non_null(mkdtemp(g_sock_dir));
	assert_int_equal(chown(g_sock_dir, 0, NOBODY), 0);
	assert_int_equal(chmod(g_sock_dir, 0750), 0);
	snprintf(g_sock, sizeof g_sock, "%s/kms.sock", g_sock_dir);
	snprintf(g_url, sizeof g_url, "ipc://%s", g_sock);
}

static void start_kmsd(const char *listen_extra, const char *more)
{
	if (!g_sock[0])
		make_socket_dir();
	char extra[1024];
	snprintf(extra, sizeof extra, "[listen]\nurl = %s\nipc_group = %d\n%s\n%s", g_url, NOBODY,
	         listen_extra ? listen_extra : "", more ? more : "");
	harness_options o = { .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < CHILDREN_MAX; i++)
		if (g_children[i] > 0) {
			kill(g_children[i], SIGKILL);
			waitpid(g_children[i], NULL, 0);
			g_children[i] = 0;
		}
	if (H.pid > 0)
		harness_kill9(&H);
	if (g_sock[0])
		unlink(g_sock);
	if (g_sock_dir[0])
		rmdir(g_sock_dir);
	g_sock[0] = g_sock_dir[0] = g_url[0] = '\0';
	if (g_nofile_changed) { /* only with CAP_SYS_RESOURCE; the later cases need less */
		(void)setrlimit(RLIMIT_NOFILE, &g_nofile_before);
		g_nofile_changed = false;
	}
	return 0;
}

/* ---- (1) churn ---- */

/* The unmapped child: per order, CHURN_EACH connections closed at once and
 * CHURN_EACH that send the hello and close before reading; answers with
 * the number of connections that could not even be made. */
static void churn_child(int cmd, int res, const void *arg)
{
	const char *path = arg;
	for (int round = 0; round <= CHURN_ROUNDS && next_order(cmd) == 'r'; round++) {
		uint8_t failed = 0;
		for (int i = 0; i < 2 * CHURN_EACH; i++) {
			int fd = sp_raw_unix_connect(path, IO_TIMEOUT_S);
			if (fd < 0) {
				failed++;
				continue;
			}
			if (i >= CHURN_EACH) /* kmsd may have closed */
				(void)sp_raw_put_all(fd, sp_raw_req_hello, sizeof sp_raw_req_hello);
			close(fd);
		}
		if (write(res, &failed, 1) != 1)
			_exit(4);
	}
	_exit(0);
}

static void churn_then_a_mapped_client_is_served(void **state)
{
	(void)state;
	start_kmsd(NULL, NULL);
	attacker a;
	attacker_start(&a, NOBODY, churn_child, g_sock);
	uint8_t req[128];
	size_t n = health_request(req, sizeof req);
	uint64_t started = e2e_now_ms(), worst = 0;
	unsigned served = 0, rounds = 0;
	for (; rounds < CHURN_ROUNDS && e2e_now_ms() - started < CHURN_TOTAL_MS; rounds++) {
		attacker_order(&a, 'r');
		/* Meanwhile the same pattern from a mapped uid: admitted, hello
		 * sent, the peer gone before reading it. */
		for (int i = 0; i < CHURN_EACH; i++) {
			int fd = sp_raw_unix_connect(g_sock, IO_TIMEOUT_S);
			assert_true(fd >= 0);
			close(fd);
		}
		uint8_t failed = 0xff;
		attacker_report(&a, &failed, 1, "churning");
		assert_int_equal(failed, 0);
		size_t len = 0;
		uint64_t t0 = e2e_now_ms();
		uint8_t *reply = harness_raw(g_url, req, n, CHURN_SERVED_MS, &len);
		uint64_t took = e2e_now_ms() - t0;
		if (!reply)
			fail_msg("round %u: a mapped client on a fresh connection got no answer "
			         "within %d ms; see %s", rounds, CHURN_SERVED_MS, H.log);
		Kms__Response *r = kms__response__unpack(NULL, len, reply);
		free(reply);
		assert_non_null(r);
		assert_int_equal(r->status, KMS__STATUS__OK);
		kms__response__free_unpacked(r, NULL);
		served++;
		if (took > worst)
			worst = took;
	}
	uint64_t total = e2e_now_ms() - started;
	assert_int_equal(attacker_finish(&a), 0);
	printf("# churn: %u rounds of %d silent + %d hello-only unmapped connections and %d "
	       "mapped ones closed before kmsd's hello: %u served on a fresh connection, worst "
	       "%llu ms, %llu ms in all\n", rounds, CHURN_EACH, CHURN_EACH, CHURN_EACH, served,
	       (unsigned long long)worst, (unsigned long long)total);
	assert_int_equal(served, CHURN_ROUNDS);
	assert_true(worst < CHURN_SERVED_MS);
	assert_true(e2e_health_ms(&H) < CHURN_SERVED_MS); /* the harness's own socket too */
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (2) held connections ---- */

typedef struct hold_counts {
	uint32_t opened, connect_failed, admitted, closed, silent;
} hold_counts;

/* Opens HELD connections, sends nothing, and sorts them by what kmsd did
 * first: its hello (admitted) or a close (turned away at accept). Reports
 * the counts, holds everything until the next order, closes it all. */
static void hold_child(int cmd, int res, const void *arg)
{
	const char *path = arg;
	static int fds[HELD];
	static uint8_t got[HELD];
	static bool sorted[HELD];
	hold_counts c = { 0 };
	if (next_order(cmd) != 'g')
		_exit(5);
	uint64_t deadline = e2e_now_ms() + CLASSIFY_MS;
	for (int i = 0; i < HELD && e2e_now_ms() < deadline; i++) {
		int fd = sp_raw_unix_connect(path, IO_TIMEOUT_S);
		if (fd < 0)
			c.connect_failed++;
		else
			fds[c.opened++] = fd;
	}
	static struct pollfd pf[HELD];
	static int which[HELD];
	deadline = e2e_now_ms() + CLASSIFY_MS;
	for (uint32_t left = c.opened; left && e2e_now_ms() < deadline;) {
		nfds_t n = 0;
		for (uint32_t i = 0; i < c.opened; i++)
			if (!sorted[i]) {
				pf[n] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
				which[n++] = (int)i;
			}
		int r = poll(pf, n, (int)(deadline - e2e_now_ms()));
		if (r <= 0)
			continue;
		for (nfds_t k = 0; k < n; k++) {
			if (!pf[k].revents)
				continue;
			int i = which[k];
			uint8_t buf[8];
			ssize_t m = recv(fds[i], buf, sizeof buf - got[i], MSG_DONTWAIT);
			if (m < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (m > 0 && (got[i] += (uint8_t)m) < sizeof buf)
				continue;
			if (m > 0)
				c.admitted++;
			else
				c.closed++;
			sorted[i] = true;
			left--;
		}
	}
	c.silent = c.opened - c.admitted - c.closed;
	if (write(res, &c, sizeof c) != (ssize_t)sizeof c)
		_exit(4);
	(void)next_order(cmd); /* hold until told (or the bound) */
	for (uint32_t i = 0; i < c.opened; i++)
		close(fds[i]);
	_exit(0);
}

static void crypt_roundtrip(const char *key, const char *when)
{
	uint8_t plain[64];
	memset(plain, 0x5a, sizeof plain);
	Kms__Response *e = e2e_encrypt(&H, key, plain, sizeof plain);
	if (!e || e->status != KMS__STATUS__OK)
		fail_msg("Encrypt %s: %s", when, e ? e->message : "no answer");
	Kms__Response *d = e2e_decrypt(&H, e->encrypt->ciphertext_blob.data,
	                               e->encrypt->ciphertext_blob.len);
	if (!d || d->status != KMS__STATUS__OK)
		fail_msg("Decrypt %s: %s", when, d ? d->message : "no answer");
	assert_int_equal(d->decrypt->plaintext.len, sizeof plain);
	assert_memory_equal(d->decrypt->plaintext.data, plain, sizeof plain);
	kms__response__free_unpacked(e, NULL);
	kms__response__free_unpacked(d, NULL);
}

static void held_connections_at_the_file_limit(void **state)
{
	(void)state;
	/* Under valgrind (scripts/valgrind) the test's own RLIMIT_NOFILE is
	 * valgrind's (it keeps descriptors of its own above the limit and
	 * refuses the change): the limit's handling is checked without it. */
	if (getenv("KMS_TEST_KMSD_WRAPPER")) {
		print_message("# skipped under %s: setrlimit(RLIMIT_NOFILE) is valgrind's own\n",
		              getenv("KMS_TEST_KMSD_WRAPPER"));
		skip();
	}
	/* The holders are forked first: each needs more than 1,024 descriptors,
	 * and raising a hard limit back takes CAP_SYS_RESOURCE, which a root
	 * in a container may lack. Then kmsd gets soft = hard = 1024. */
	make_socket_dir();
	attacker mapped, unmapped;
	attacker_start(&mapped, MAPPED_UID, hold_child, g_sock);
	attacker_start(&unmapped, NOBODY, hold_child, g_sock);
	struct rlimit lim = { FILE_LIMIT, FILE_LIMIT };
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &g_nofile_before), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0); /* kmsd inherits it */
	g_nofile_changed = true;
	start_kmsd(NULL, MAPPED_LINE);
	attacker_order(&mapped, 'g');
	attacker_order(&unmapped, 'g');
	hold_counts m, u;
	attacker_report(&mapped, &m, sizeof m, "holding (mapped)");
	attacker_report(&unmapped, &u, sizeof u, "holding (unmapped)");
	/* Both hold everything now: the parent's requests meanwhile. */
	unsigned fds_held = e2e_kmsd_fds(&H);
	uint64_t t0 = e2e_now_ms();
	Kms__Response *ck = e2e_create_key(&H);
	if (!ck || ck->status != KMS__STATUS__OK)
		fail_msg("CreateKey while held: %s", ck ? ck->message : "no answer");
	char key[35];
	snprintf(key, sizeof key, "%s", ck->create_key->key_metadata->key_id);
	kms__response__free_unpacked(ck, NULL);
	crypt_roundtrip(key, "while 2,200 connections are held");
	uint64_t held_ms = e2e_now_ms() - t0;
	attacker_order(&mapped, 'x');
	attacker_order(&unmapped, 'x');
	assert_int_equal(attacker_finish(&mapped), 0);
	assert_int_equal(attacker_finish(&unmapped), 0);
	crypt_roundtrip(key, "after the holders closed");
	uint8_t req[128];
	size_t n = health_request(req, sizeof req), len = 0;
	uint8_t *reply = harness_raw(g_url, req, n, CHURN_SERVED_MS, &len); /* the socket held */
	if (!reply)
		fail_msg("no answer on %s after the holders closed; see %s", g_url, H.log);
	free(reply);
	printf("# held at a file limit of %d: uid %d opened %u (%u failed): %u admitted, %u "
	       "closed at accept, %u silent; uid %d opened %u (%u failed): %u admitted, %u "
	       "closed, %u silent; kmsd held %u fds; CreateKey+Encrypt+Decrypt meanwhile in "
	       "%llu ms\n", FILE_LIMIT, MAPPED_UID, m.opened, m.connect_failed, m.admitted,
	       m.closed, m.silent, NOBODY, u.opened, u.connect_failed, u.admitted, u.closed,
	       u.silent, fds_held, (unsigned long long)held_ms);
	assert_int_equal(m.opened, HELD);
	assert_int_equal(u.opened, HELD);
	assert_int_equal(m.admitted, PER_UID_CAP);
	assert_int_equal(m.closed, HELD - PER_UID_CAP);
	assert_int_equal(u.admitted, 0);
	assert_int_equal(u.closed, HELD);
	assert_true(fds_held < FILE_LIMIT / 2);
	assert_false(harness_log_contains(&H, "unable to open"));
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (3) memory ---- */

typedef struct big_arg {
	const char *path;
	uint32_t n;
	bool wait_eof; /* mapped: wait for kmsd to close each one */
} big_arg;

typedef struct big_counts {
	uint32_t opened, written, write_failed;
} big_counts;

typedef struct eof_counts {
	uint32_t ended;
	uint32_t last_ms; /* after the writes */
} eof_counts;

/* Opens n connections, each sending the hello, a frame header for an
 * ANNOUNCED-byte message and SENT_BODY bytes of it, then nothing more;
 * reports. A mapped child then waits for kmsd to close each (its hello
 * first, then EOF) and reports how many did and when the last did. */
static void big_child(int cmd, int res, const void *argp)
{
	const big_arg *arg = argp;
	static int fds[UNMAPPED_BIG];
	static uint8_t body[SENT_BODY];
	memset(body, 0xa5, sizeof body);
	uint8_t head[SP_RAW_IPC_HEAD];
	sp_raw_ipc_head(head, 1, ANNOUNCED - 4);
	big_counts c = { 0 };
	for (uint32_t i = 0; i < arg->n && i < UNMAPPED_BIG; i++) {
		int fd = sp_raw_unix_connect(arg->path, IO_TIMEOUT_S);
		if (fd < 0)
			continue;
		fds[c.opened++] = fd;
		if (sp_raw_put_all(fd, sp_raw_req_hello, sizeof sp_raw_req_hello) &&
		    sp_raw_put_all(fd, head, sizeof head) && sp_raw_put_all(fd, body, sizeof body))
			c.written++;
		else
			c.write_failed++;
	}
	if (write(res, &c, sizeof c) != (ssize_t)sizeof c)
		_exit(4);
	uint64_t sent_at = e2e_now_ms(), deadline = sent_at + STALL_EOF_MS;
	eof_counts e = { 0 };
	static bool ended[UNMAPPED_BIG];
	for (uint32_t left = c.opened; arg->wait_eof && left && e2e_now_ms() < deadline;) {
		static struct pollfd pf[UNMAPPED_BIG];
		static uint32_t which[UNMAPPED_BIG];
		nfds_t n = 0;
		for (uint32_t i = 0; i < c.opened; i++)
			if (!ended[i]) {
				pf[n] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
				which[n++] = i;
			}
		if (poll(pf, n, (int)(deadline - e2e_now_ms())) <= 0)
			continue;
		for (nfds_t k = 0; k < n; k++) {
			if (!pf[k].revents)
				continue;
			uint8_t buf[64];
			ssize_t m = recv(fds[which[k]], buf, sizeof buf, MSG_DONTWAIT);
			if (m > 0 || (m < 0 && (errno == EAGAIN || errno == EINTR)))
				continue; /* kmsd's hello */
			ended[which[k]] = true;
			e.ended++;
			e.last_ms = (uint32_t)(e2e_now_ms() - sent_at);
			left--;
		}
	}
	if (arg->wait_eof && write(res, &e, sizeof e) != (ssize_t)sizeof e)
		_exit(4);
	(void)next_order(cmd);
	for (uint32_t i = 0; i < c.opened; i++)
		close(fds[i]);
	_exit(0);
}

static void unadmitted_and_stalled_peers_cost_little_memory(void **state)
{
	(void)state;
	start_kmsd("ipc_read_timeout_ms = 1000\n", MAPPED_LINE);
	(void)e2e_health_ms(&H);
	unsigned long before = rss_kib(H.pid);
	big_arg ua = { .path = g_sock, .n = UNMAPPED_BIG };
	big_arg ma = { .path = g_sock, .n = MAPPED_BIG, .wait_eof = true };
	attacker unmapped, mapped;
	attacker_start(&unmapped, NOBODY, big_child, &ua);
	attacker_start(&mapped, MAPPED_UID, big_child, &ma);
	big_counts u, m;
	attacker_report(&unmapped, &u, sizeof u, "announcing (unmapped)");
	attacker_report(&mapped, &m, sizeof m, "announcing (mapped)");
	/* Every byte is written (or refused). The mapped child reports again
	 * once kmsd has closed each of its connections, which it does only
	 * after granting that message's buffer and reading into it: until
	 * then, kmsd's RSS is sampled for its peak, and other clients' Health
	 * latency for its worst. Small requests have a buffer pool of their
	 * own and one uid may hold only half of the large one, so Health is
	 * never held up by the stalled messages (it used to wait up to
	 * 32 / (workers + 2) x ipc_read_timeout_ms, over 20 s at the default
	 * 5 s); the stalled ones are granted 3 at a time, so the last closes
	 * after about 32 / 3 read timeouts. */
	unsigned long after = rss_kib(H.pid), peak = after;
	eof_counts e = { 0 };
	bool reported = false;
	uint64_t worst = 0;
	unsigned calls = 0;
	uint64_t deadline = e2e_now_ms() + STALL_EOF_MS + CHILD_REPORT_MS;
	for (unsigned i = 0; !reported && e2e_now_ms() < deadline &&
	                     i < (STALL_EOF_MS + CHILD_REPORT_MS) / RSS_SAMPLE_MS; i++) {
		uint64_t took = e2e_health_ms(&H);
		worst = took > worst ? took : worst;
		calls++;
		unsigned long now = rss_kib(H.pid);
		peak = now > peak ? now : peak;
		struct pollfd pf = { .fd = mapped.res, .events = POLLIN };
		if (poll(&pf, 1, RSS_SAMPLE_MS) == 1)
			reported = sp_raw_get_all(mapped.res, &e, sizeof e, e2e_now_ms() + CHILD_REPORT_MS);
	}
	attacker_order(&unmapped, 'x');
	attacker_order(&mapped, 'x');
	assert_int_equal(attacker_finish(&unmapped), 0);
	assert_int_equal(attacker_finish(&mapped), 0);
	(void)e2e_health_ms(&H);
	printf("# memory: kmsd VmRSS %lu KiB before, %lu KiB after the writes, peak %lu KiB "
	       "(growth %lu KiB; NNG reached 1.65 GB); %u unmapped connections announced %u MiB "
	       "each (%u written whole, %u cut off by kmsd's close); %u mapped ones stalled "
	       "after %u KiB: %u closed by kmsd, the last %u ms after the writes; another "
	       "client's Health meanwhile: worst %llu ms of %u\n",
	       before, after, peak, peak - before, u.opened, ANNOUNCED >> 20, u.written,
	       u.write_failed, m.opened, SENT_BODY >> 10, e.ended, e.last_ms,
	       (unsigned long long)worst, calls);
	assert_true(reported);
	assert_int_equal(u.opened, UNMAPPED_BIG);
	assert_int_equal(m.opened, MAPPED_BIG);
	assert_int_equal(m.written, MAPPED_BIG);
	assert_int_equal(e.ended, MAPPED_BIG);
	assert_true(peak < before + RSS_GROWTH_MAX_KIB);
	assert_true(worst < HEALTH_WITHIN_MS);
	assert_true(harness_log_contains(&H, "started a message and stopped for 1000 ms"));
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (4) a peer that reads nothing ---- */

/* root's own raw connection to the harness's socket: a small receive
 * buffer, a send buffer that holds the whole flood (so the writes never
 * wait on kmsd), the hello exchanged. */
static int flood_peer(void)
{
	const char *path = H.ipc_url + strlen("ipc://");
	int fd = sp_raw_unix_connect(path, IO_TIMEOUT_S);
	assert_true(fd >= 0);
	int small = 4096, big = 4 << 20;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
	uint8_t theirs[8];
	assert_true(sp_raw_put_all(fd, sp_raw_req_hello, sizeof sp_raw_req_hello));
	assert_true(sp_raw_get_all(fd, theirs, sizeof theirs, e2e_now_ms() + IO_TIMEOUT_S * 1000));
	assert_true(theirs[1] == 'S' && theirs[2] == 'P' && theirs[5] == 0x31);
	return fd;
}

/* FLOOD Encrypts of FLOOD_PLAINTEXT bytes each, pipelined, none read. */
static void flood(int fd, const char *key)
{
	static uint8_t plain[FLOOD_PLAINTEXT];
	memset(plain, 0x3c, sizeof plain);
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = plain;
	e.plaintext.len = sizeof plain;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "flood";
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	size_t n = kms__request__get_packed_size(&req);
	uint8_t *body = malloc(n);
	assert_non_null(body);
	kms__request__pack(&req, body);
	for (uint32_t i = 0; i < FLOOD; i++) {
		uint8_t head[SP_RAW_IPC_HEAD];
		sp_raw_ipc_head(head, i + 1, n);
		if (!sp_raw_put_all(fd, head, sizeof head) || !sp_raw_put_all(fd, body, n))
			fail_msg("flood: request %u not sent: %s", i, strerror(errno));
	}
	free(body);
}

/* Reads fd until it ends (EOF or reset) or STALL_WAIT_MS pass; the bytes
 * read in *got. */
static bool ends(int fd, size_t *got)
{
	static uint8_t buf[65536];
	uint64_t deadline = e2e_now_ms() + STALL_WAIT_MS;
	*got = 0;
	while (e2e_now_ms() < deadline) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, (int)(deadline - e2e_now_ms())) <= 0)
			continue;
		ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r > 0)
			*got += (size_t)r;
		else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			return true;
	}
	return false;
}

static void a_peer_that_reads_nothing_is_dropped(void **state)
{
	(void)state;
	char limits[96];
	snprintf(limits, sizeof limits, "[limits]\nreply_send_timeout_ms = %d\n", SEND_TIMEOUT_MS);
	start_kmsd(NULL, limits);
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	int fd = flood_peer();
	flood(fd, key);
	/* Others are served until kmsd says it dropped the peer (the event). */
	uint64_t worst = 0, deadline = e2e_now_ms() + DROP_DEADLINE_MS;
	unsigned calls = 0;
	bool dropped = false;
	while (!dropped && e2e_now_ms() < deadline) {
		uint64_t took = e2e_health_ms(&H);
		if (took > worst)
			worst = took;
		calls++;
		dropped = harness_log_contains(&H, DROP_LINE);
	}
	size_t got = 0;
	bool ended = ends(fd, &got);
	close(fd);
	printf("# %d pipelined Encrypts of %d bytes, none read: others answered within %llu ms "
	       "(worst of %u); kmsd %s the peer, whose connection %s after %zu reply bytes\n",
	       FLOOD, FLOOD_PLAINTEXT, (unsigned long long)worst, calls,
	       dropped ? "dropped" : "did NOT drop", ended ? "ended" : "did NOT end", got);
	assert_true(dropped);
	assert_true(worst < SERVED_WITHIN_MS);
	assert_true(ended);
	assert_true(got > 0 && got < (size_t)FLOOD * ENCRYPT_REPLY_MIN);
	assert_int_equal(harness_stop(&H), 0);

	/* The same flood with the default 5 s to take a reply, then SIGTERM. */
	harness_options o = { .extra_config = NULL };
	char extra[256];
	snprintf(extra, sizeof extra, "[listen]\nurl = %s\nipc_group = %d\n", g_url, NOBODY);
	o.extra_config = extra;
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start again; see %s", H.log);
	fd = flood_peer();
	flood(fd, key);
	/* The event: the kernel holds about as many unread replies as the peer
	 * got before it was dropped above (all the kernel takes from kmsd),
	 * so kmsd's own queue for it no longer drains when SIGTERM comes. */
	int inq = 0, stalled = (int)(got / 8 * 7);
	deadline = e2e_now_ms() + STALL_WAIT_MS;
	for (unsigned i = 0; inq < stalled && e2e_now_ms() < deadline && i < 100000; i++) {
		assert_int_equal(ioctl(fd, FIONREAD, &inq), 0);
		if (inq < stalled)
			(void)e2e_health_ms(&H); /* a round trip: kmsd moves on */
	}
	assert_true(inq >= stalled);
	uint64_t t0 = e2e_now_ms();
	int rc = harness_stop(&H);
	uint64_t took = e2e_now_ms() - t0;
	close(fd);
	printf("# SIGTERM with a peer that reads nothing (%d KiB of replies unread): exit %d "
	       "after %llu ms\n", inq >> 10, rc, (unsigned long long)took);
	assert_int_equal(rc, 0);
	assert_true(took < STOP_BOUND_MS);
}

/* ---- (5) /healthz ---- */

/* Whether text names an absolute path: a '/' that is not part of "://". */
static bool names_a_path(const char *text)
{
	for (size_t i = 0; text[i]; i++) {
		if (text[i] != '/')
			continue;
		bool scheme = (i >= 1 && text[i - 1] == ':') ||
		              (i >= 2 && text[i - 2] == ':' && text[i - 1] == '/');
		if (!scheme)
			return true;
	}
	return false;
}

static void healthz_fails_when_ipc_does_not_answer(void **state)
{
	(void)state;
	int port = harness_free_port();
	assert_true(port > 0);
	char http[96];
	snprintf(http, sizeof http, "[audit]\nhttp = http://127.0.0.1:%d\n", port);
	start_kmsd(NULL, http);
	assert_int_equal(audit_wait_healthz(port, 200, 10000), 200);
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/healthz", 2000, &body, &len), 200);
	assert_non_null(body);
	assert_string_equal(body, "ok\n");
	free(body);
	/* Nobody can reach the listener now (a tmp cleaner, an operator). */
	assert_int_equal(unlink(g_sock), 0);
	uint64_t t0 = e2e_now_ms();
	int status = audit_wait_healthz(port, 503, HEALTHZ_503_MS);
	uint64_t took = e2e_now_ms() - t0;
	if (status == 503) /* the failed probe is cached: the same answer */
		status = audit_http_get(port, "/healthz", 3000, &body, &len);
	printf("# /healthz with the socket file removed: %d after %llu ms: %s", status,
	       (unsigned long long)took, body ? body : "(no body)\n");
	assert_int_equal(status, 503);
	assert_non_null(body);
	assert_non_null(strstr(body, "ipc endpoint unavailable"));
	assert_null(strstr(body, g_sock_dir));
	assert_null(strstr(body, H.dir));
	assert_false(names_a_path(body));
	free(body);
	(void)e2e_health_ms(&H); /* the harness's own socket still answers */
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "SKIPPED: acting as other uids needs root; hostile ipc peers are "
		        "NOT tested\n");
		return SKIPPED_EXIT_CODE;
	}
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(churn_then_a_mapped_client_is_served, teardown),
		cmocka_unit_test_teardown(held_connections_at_the_file_limit, teardown),
		cmocka_unit_test_teardown(unadmitted_and_stalled_peers_cost_little_memory, teardown),
		cmocka_unit_test_teardown(a_peer_that_reads_nothing_is_dropped, teardown),
		cmocka_unit_test_teardown(healthz_fails_when_ipc_does_not_answer, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
