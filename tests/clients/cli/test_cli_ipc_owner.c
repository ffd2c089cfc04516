/*
 * `kms encrypt` (the real binary) against a unix socket planted at the ipc
 * path by another local user (uid 65534, nobody): the card number must
 * never reach it.
 *
 *   - a socket file owned by nobody is refused before dialing: exit 3, one
 *     line naming the path and uid 65534, and the listener gets 0 bytes;
 *   - --server-uid 65534 (or KMS_SERVER_UID=65534) accepts it: the uid
 *     error is gone (the fake speaks no SP, so the call then times out);
 *   - a socket file owned by root but listened on by nobody (bound as root,
 *     listen(2) after dropping to 65534: the file passes lstat, the kernel's
 *     peer uid says 65534) is closed by the pipe check before a request is
 *     sent: exit 3 naming uid 65534, and the listener gets nothing but the
 *     8-byte SP header of each connection.
 *
 * Acting as another uid needs root; without it the test says so and exits
 * 77 (ctest: skipped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/run_bin.h"
#include "tests/support/sp_raw.h"

#define NOBODY 65534
#define SKIPPED_EXIT_CODE 77
#define PLAINTEXT "4111 1111 1111 1111"
#define CALL_TIMEOUT_MS "1000"   /* kms's own bound on the call */
#define CLI_WAIT_MS 15000        /* ours on the kms process */
#define LISTENER_LIFE_MS 30000   /* the planted listener exits by then anyway */
#define LISTENER_CONNS_MAX 200   /* connections it takes, at most */
#define RECEIVED_MAX (64 * 1024) /* bytes the test reads back, at most */

static bool g_skipped;
static char g_dir[64];       /* owned by nobody, so nobody may bind in it */
static char g_sock[128];
static char g_received[128]; /* what the listener got, written by it */
static char g_plain[128];    /* kms's input */

/* ---- small helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The whole of a small file (NUL-terminated, *len without it). */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = calloc(1, RECEIVED_MAX + 1);
	size_t n = buf ? fread(buf, 1, RECEIVED_MAX, f) : 0;
	fclose(f);
	if (len)
		*len = n;
	return buf;
}

/* ---- the planted listener ---- */

enum plant_mode {
	PLANT_AS_NOBODY,      /* nobody binds and listens: the file is nobody's */
	PLANT_ROOT_FILE,      /* root binds, nobody listens and speaks SP */
};

/* In the child: accept and record every byte into g_received until the
 * parent closes stop_fd (or LISTENER_LIFE_MS). Exits with the number of
 * connections taken; 250 and up for its own failures. ready_fd gets one
 * byte once it listens. */
static void listener(enum plant_mode mode, int ready_fd, int stop_fd)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, g_sock, strlen(g_sock) + 1);
	if (fd < 0)
		_exit(250);
	if (mode == PLANT_ROOT_FILE && bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		_exit(251);
	if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
		_exit(252);
	if (mode == PLANT_AS_NOBODY && bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		_exit(253);
	/* The kernel records the listener's credentials here: nobody's. */
	if (listen(fd, 16) != 0)
		_exit(254);
	int rec = open(g_received, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (rec < 0)
		_exit(255);
	if (write(ready_fd, "r", 1) != 1)
		_exit(255);

	struct pollfd p[2 + LISTENER_CONNS_MAX];
	size_t n_conns = 0;
	p[0] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = fd, .events = POLLIN };
	uint64_t until = now_ms() + LISTENER_LIFE_MS;
	bool stopping = false;
	/* Bounded by time. Once the parent is done (kms has exited), one last
	 * pass takes what is queued: pending connections, unread bytes. */
	while (!stopping && now_ms() < until) {
		int left = (int)(until - now_ms());
		if (poll(p, 2 + n_conns, left > 100 ? 100 : left) < 0 && errno != EINTR)
			_exit(250);
		if (p[0].revents) {
			stopping = true;
			for (size_t i = 1; i < 2 + n_conns; i++)
				p[i].revents = p[i].fd >= 0 ? POLLIN : 0;
			if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
				_exit(250);
		}
		/* Every pending connection (all of them when stopping). */
		for (int k = 0; (p[1].revents & POLLIN) && k < LISTENER_CONNS_MAX &&
		                n_conns < LISTENER_CONNS_MAX; k++) {
			int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | (stopping ? SOCK_NONBLOCK : 0));
			if (c < 0)
				break;
			if (mode == PLANT_ROOT_FILE && !stopping &&
			    write(c, sp_raw_rep_hello, sizeof sp_raw_rep_hello) !=
			    (ssize_t)sizeof sp_raw_rep_hello)
				_exit(250);
			p[2 + n_conns] = (struct pollfd){ .fd = c, .events = POLLIN,
			                                  .revents = stopping ? POLLIN : 0 };
			n_conns++;
			if (!stopping)
				break; /* one per turn; poll says when the next is there */
		}
		for (size_t i = 0; i < n_conns; i++) {
			struct pollfd *q = &p[2 + i];
			if (q->fd < 0 || !q->revents)
				continue;
			if (stopping && fcntl(q->fd, F_SETFL, O_NONBLOCK) != 0)
				_exit(250);
			/* Stopping: read until nothing is left (bounded). */
			for (int k = 0; k < (stopping ? 1024 : 1); k++) {
				uint8_t buf[4096];
				ssize_t r = read(q->fd, buf, sizeof buf);
				if (r > 0) {
					if (write(rec, buf, (size_t)r) != r)
						_exit(250);
					continue;
				}
				if (r < 0 && errno == EINTR)
					continue;
				if (r == 0 || errno != EAGAIN) {
					close(q->fd);
					q->fd = -1; /* poll skips it */
				}
				break;
			}
		}
	}
	close(rec);
	_exit((int)(n_conns < 249 ? n_conns : 249));
}

struct planted {
	pid_t pid;
	int stop_fd;
};

static struct planted plant(enum plant_mode mode)
{
	int ready[2], stop[2];
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(stop[1]);
		listener(mode, ready[1], stop[0]);
	}
	close(ready[1]);
	close(stop[0]);
	/* Wait for "listening" (or the child's death), bounded. */
	struct pollfd p = { .fd = ready[0], .events = POLLIN };
	char byte = 0;
	if (poll(&p, 1, CLI_WAIT_MS) != 1 || read(ready[0], &byte, 1) != 1) {
		int status = 0;
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("the planted listener did not start (exit %d)",
		         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	close(ready[0]);
	return (struct planted){ .pid = pid, .stop_fd = stop[1] };
}

/* Stops the listener; returns the connections it took. */
static int unplant(struct planted *pl)
{
	close(pl->stop_fd);
	int status = 0;
	if (!run_bin_wait(pl->pid, CLI_WAIT_MS, &status)) {
		kill(pl->pid, SIGKILL);
		waitpid(pl->pid, &status, 0);
		fail_msg("the planted listener did not stop within %d ms", CLI_WAIT_MS);
	}
	pl->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) >= 250)
		fail_msg("the planted listener failed (exit %d)",
		         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return WEXITSTATUS(status);
}

/* ---- kms ---- */

struct run {
	int code;
	char *err; /* stdout and stderr */
};

/* kms encrypt of PLAINTEXT to g_sock, with extra args (NULL-terminated)
 * and, when env_uid is not NULL, KMS_SERVER_UID=env_uid; none of the
 * caller's KMS_* variables (its endpoint or uid). Bounded. */
static struct run kms_encrypt(const char *const *extra, const char *env_uid)
{
	const char *bin = getenv("KMS_TEST_KMS");
	assert_non_null(bin);
	char endpoint[160];
	snprintf(endpoint, sizeof endpoint, "ipc://%s", g_sock);
	const char *argv[16] = { "encrypt", "--key", "alias/cards", "--in", g_plain,
		                 "--endpoint", endpoint, "--timeout", CALL_TIMEOUT_MS };
	size_t n = 9;
	for (size_t i = 0; extra && extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	char uid_var[64];
	snprintf(uid_var, sizeof uid_var, "KMS_SERVER_UID=%s", env_uid ? env_uid : "");
	const char *env[] = { env_uid ? uid_var : NULL, NULL };
	run_bin_options o = { .env = env, .drop_env_prefix = "KMS_", .merge_stderr = true,
		              .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, argv, &o);
	free(r.err);
	return (struct run){ .code = r.code, .err = r.out };
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "SKIPPED: planting a socket as uid %d needs root; the ipc "
		        "owner check is NOT tested\n", NOBODY);
		g_skipped = true;
		return 0;
	}
	/* Under /tmp: every parent directory must be searchable by nobody. */
	snprintf(g_dir, sizeof g_dir, "/tmp/kms-ipc-owner-XXXXXX");
	if (!mkdtemp(g_dir) || chown(g_dir, NOBODY, NOBODY) != 0 || chmod(g_dir, 0755) != 0)
		return -1;
	snprintf(g_sock, sizeof g_sock, "%s/kms.sock", g_dir);
	snprintf(g_received, sizeof g_received, "%s/received", g_dir);
	snprintf(g_plain, sizeof g_plain, "%s/card.txt", g_dir);
	FILE *f = fopen(g_plain, "wb");
	if (!f || fputs(PLAINTEXT, f) < 0 || fclose(f) != 0)
		return -1;
	return 0;
}

static int teardown_each(void **state)
{
	(void)state;
	if (g_dir[0]) {
		unlink(g_sock);
		unlink(g_received);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (g_dir[0]) {
		unlink(g_plain);
		rmdir(g_dir);
	}
	return 0;
}

#define SKIP_UNLESS_ROOT()                                                     \
	do {                                                                   \
		if (g_skipped)                                                 \
			skip();                                                \
	} while (0)

static void expect_uid_refusal(const struct run *r)
{
	char want[200];
	snprintf(want, sizeof want, "ipc socket %s is owned by uid %d", g_sock, NOBODY);
	if (r->code != 3 || !strstr(r->err, want) || !strstr(r->err, "--server-uid"))
		fail_msg("kms encrypt: exit %d (want 3), output does not say \"%s\":\n%s",
		         r->code, want, r->err);
	/* One line. */
	const char *nl = strchr(r->err, '\n');
	if (!nl || nl[1] != '\0')
		fail_msg("kms encrypt: not one line:\n%s", r->err);
}

/* Plants a listener (mode; the socket file must be file_uid's), runs kms
 * encrypt with no server uid and expects the uid refusal. Returns what the
 * listener received (*got bytes; free it) over *conns connections, and
 * prints both under what. */
static char *refused_encrypt(enum plant_mode mode, uid_t file_uid, const char *what,
                             int *conns, size_t *got)
{
	struct planted pl = plant(mode);
	struct stat st;
	assert_int_equal(lstat(g_sock, &st), 0);
	assert_int_equal(st.st_uid, file_uid);

	struct run r = kms_encrypt(NULL, NULL);
	*conns = unplant(&pl);
	expect_uid_refusal(&r);
	free(r.err);
	*got = 0;
	char *received = slurp(g_received, got);
	assert_non_null(received);
	fprintf(stderr, "%s: %d connections, %zu bytes received\n", what, *conns, *got);
	return received;
}

/* ---- the tests ---- */

/* The file is nobody's: refused before dialing, nothing reaches it. */
static void nobodys_socket_is_refused_before_dialing(void **state)
{
	(void)state;
	SKIP_UNLESS_ROOT();
	int conns;
	size_t got;
	char *received = refused_encrypt(PLANT_AS_NOBODY, NOBODY, "refused before dialing",
	                                 &conns, &got);
	assert_int_equal(conns, 0);
	assert_int_equal(got, 0);
	free(received);
}

/* --server-uid 65534 and KMS_SERVER_UID=65534 accept nobody as the server:
 * no uid error (the fake never answers, so "no answer"). A uid given that
 * is not nobody's keeps the refusal. */
static void server_uid_accepts_the_owner(void **state)
{
	(void)state;
	SKIP_UNLESS_ROOT();
	struct planted pl = plant(PLANT_AS_NOBODY);
	struct run flag = kms_encrypt((const char *const[]){ "--server-uid", "65534", NULL },
	                              NULL);
	struct run env = kms_encrypt(NULL, "65534");
	struct run other = kms_encrypt((const char *const[]){ "--server-uid", "1234", NULL },
	                               NULL);
	/* The flag wins over the environment. */
	struct run flag_over_env =
		kms_encrypt((const char *const[]){ "--server-uid", "1234", NULL }, "65534");
	int conns = unplant(&pl);

	const struct run *accepted[] = { &flag, &env };
	for (size_t i = 0; i < 2; i++) {
		const struct run *r = accepted[i];
		if (r->code != 3 || strstr(r->err, "owned by uid") ||
		    !strstr(r->err, "no answer"))
			fail_msg("kms encrypt with server uid 65534 (%s): exit %d, output:\n%s",
			         i ? "KMS_SERVER_UID" : "--server-uid", r->code, r->err);
	}
	expect_uid_refusal(&other);
	expect_uid_refusal(&flag_over_env);
	/* The two accepted calls dialed it; it never spoke SP, so the request
	 * was never sent: at most each connection's SP header arrived. */
	size_t got = 0;
	char *received = slurp(g_received, &got);
	assert_non_null(received);
	fprintf(stderr, "accepted with --server-uid: %d connections, %zu bytes received\n",
	        conns, got);
	assert_true(conns >= 2);
	assert_null(memmem(received, got, "4111", 4));
	free(received);
	free(flag.err);
	free(env.err);
	free(other.err);
	free(flag_over_env.err);
}

/* The file is root's, the listener nobody's: lstat passes, the kernel's
 * peer uid does not. The pipe is closed before the request goes out. */
static void kernel_peer_uid_closes_the_pipe(void **state)
{
	(void)state;
	SKIP_UNLESS_ROOT();
	int conns;
	size_t got;
	char *received = refused_encrypt(PLANT_ROOT_FILE, 0, "closed by the pipe check", &conns,
	                                 &got);
	/* It did connect and hear from NNG (else this tested nothing), and got
	 * nothing but SP headers: at most one per connection (a reconnect cut
	 * short by kms exiting may send none). */
	assert_true(conns >= 1);
	assert_true(got >= sizeof sp_raw_req_hello);
	assert_true(got <= (size_t)conns * sizeof sp_raw_req_hello);
	assert_int_equal(got % sizeof sp_raw_req_hello, 0);
	for (size_t off = 0; off < got; off += sizeof sp_raw_req_hello)
		assert_memory_equal(received + off, sp_raw_req_hello, sizeof sp_raw_req_hello);
	assert_null(memmem(received, got, "4111", 4));
	free(received);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(nobodys_socket_is_refused_before_dialing,
		                          teardown_each),
		cmocka_unit_test_teardown(server_uid_accepts_the_owner, teardown_each),
		cmocka_unit_test_teardown(kernel_peer_uid_closes_the_pipe, teardown_each),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	return failed == 0 && g_skipped ? SKIPPED_EXIT_CODE : failed;
}
