/*
 * kmsd as a systemd Type=notify service, without systemd: the test owns the
 * datagram socket NOTIFY_SOCKET names and reads what a real kmsd sends
 * (kms/kmsd_notify.h).
 *
 * - READY=1 arrives once kmsd logged "ready", and Health then answers;
 *   SIGTERM sends STOPPING=1 before kmsd exits 0.
 * - With WATCHDOG_USEC, WATCHDOG=1 arrives (after a good HSM probe).
 * - Without WATCHDOG_USEC no WATCHDOG=1 is ever sent, and without
 *   NOTIFY_SOCKET nothing is.
 *
 * Every wait is for a message, bounded; no step rests on timing: once kmsd
 * has exited, everything it sent is in the socket's queue.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/group.h"
#include "tests/support/harness.h"

#define WAIT_MS 30000   /* the longest wait for one expected message */
#define MSG_MAX 4096    /* sd_notify's messages here are a few lines */
#define MSGS_MAX 10000  /* bound on the datagrams read in one wait */

static harness H;
static int notify_fd = -1;
static char notify_path[sizeof ((struct sockaddr_un *)0)->sun_path];

/* What kmsd has said so far. */
typedef struct heard {
	unsigned ready, stopping, watchdog, other;
} heard;

static void clear_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static int setup(void **state)
{
	(void)state;
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	if (!dir)
		return -1;
	int n = snprintf(notify_path, sizeof notify_path, "%s/notify.sock", dir);
	if (n < 0 || (size_t)n >= sizeof notify_path) {
		fprintf(stderr, "test: %s/notify.sock is too long for a socket path\n", dir);
		return -1;
	}
	unlink(notify_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (notify_fd < 0)
		return -1;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, notify_path, (size_t)n + 1);
	if (bind(notify_fd, (struct sockaddr *)&a, sizeof a) != 0) {
		fprintf(stderr, "test: bind %s: %s\n", notify_path, strerror(errno));
		return -1;
	}
	clear_env();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	clear_env();
	int code = H.pid > 0 ? harness_stop(&H) : 0;
	if (notify_fd >= 0)
		close(notify_fd);
	unlink(notify_path);
	return code == 0 ? 0 : -1;
}

/* Counts one message's lines: each must be KEY=VALUE with a key kmsd sends. */
static void note(heard *h, char *msg)
{
	for (char *save = NULL, *line = strtok_r(msg, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "READY=1"))
			h->ready++;
		else if (!strcmp(line, "STOPPING=1"))
			h->stopping++;
		else if (!strcmp(line, "WATCHDOG=1"))
			h->watchdog++;
		else if (strncmp(line, "STATUS=", 7) != 0) {
			print_message("# unexpected notify line: %s\n", line);
			h->other++;
		}
	}
}

/* Reads datagrams into h until *count (a field of h) is non-zero or
 * wait_ms passes without one more message; returns whether it is. */
static bool wait_for(heard *h, const unsigned *count, int wait_ms)
{
	for (int i = 0; i < MSGS_MAX && !*count; i++) {
		struct pollfd p = { .fd = notify_fd, .events = POLLIN };
		if (poll(&p, 1, wait_ms) <= 0)
			return false;
		char msg[MSG_MAX + 1];
		ssize_t n = recv(notify_fd, msg, MSG_MAX, 0);
		if (n < 0)
			return false;
		msg[n] = 0;
		note(h, msg);
	}
	return *count != 0;
}

/* Everything left in the queue (kmsd has exited: no more is coming). */
static void drain(heard *h)
{
	for (int i = 0; i < MSGS_MAX; i++) {
		char msg[MSG_MAX + 1];
		ssize_t n = recv(notify_fd, msg, MSG_MAX, MSG_DONTWAIT);
		if (n < 0)
			return;
		msg[n] = 0;
		note(h, msg);
	}
}

/* The log's length now (it is appended to across starts). */
static size_t log_length(void)
{
	size_t n = 0;
	char *log = H.log[0] ? harness_read_file(H.log, &n) : NULL;
	free(log);
	return log ? n : 0;
}

/* Whether the log, past its first from bytes (this start's part), holds needle. */
static bool logged_since(size_t from, const char *needle)
{
	size_t n = 0;
	char *log = harness_read_file(H.log, &n);
	bool found = log && n >= from && strstr(log + from, needle) != NULL;
	free(log);
	return found;
}

static void expect_health(void)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->result_case, KMS__RESPONSE__RESULT_HEALTH);
	assert_true(r->health->hsm_ok);
	kms__response__free_unpacked(r, NULL);
}

/* Starts kmsd with NOTIFY_SOCKET (and WATCHDOG_USEC when watchdog_usec is
 * not NULL), waits for READY=1, asks Health. */
static size_t start_notified(heard *h, const char *watchdog_usec)
{
	size_t from = log_length();
	drain(h); /* nothing should be there: counted as seen before this kmsd */
	*h = (heard){ 0 };
	setenv("NOTIFY_SOCKET", notify_path, 1);
	if (watchdog_usec)
		setenv("WATCHDOG_USEC", watchdog_usec, 1);
	harness_options o = { 0 };
	bool spawned = harness_spawn(&H, &o);
	clear_env(); /* the child has its copy */
	assert_true(spawned);
	assert_true(wait_for(h, &h->ready, WAIT_MS));
	assert_int_equal(h->ready, 1);
	/* READY=1 is sent after the "ready" line, every listener up. */
	assert_true(logged_since(from, "kmsd: info: ready: "));
	expect_health();
	return from;
}

/* SIGTERM; kmsd drains and exits 0; STOPPING=1 was sent. */
static void stop_notified(heard *h)
{
	assert_int_equal(harness_stop(&H), 0);
	drain(h);
	assert_int_equal(h->stopping, 1);
	assert_int_equal(h->ready, 1);
	assert_int_equal(h->other, 0);
}

static void ready_health_stopping_watchdog(void **state)
{
	(void)state;
	heard h = { 0 };
	/* 1 s: a ping every 0.5 s; the wait below is for the first one. */
	size_t from = start_notified(&h, "1000000");
	assert_true(wait_for(&h, &h.watchdog, WAIT_MS));
	assert_true(logged_since(from, "watchdog: pinging systemd every 500 ms"));
	stop_notified(&h);
	print_message("# READY=1, Health OK, %u WATCHDOG=1 before STOPPING=1 and exit 0\n",
	              h.watchdog);
}

static void no_watchdog_without_watchdog_usec(void **state)
{
	(void)state;
	heard h = { 0 };
	size_t from = start_notified(&h, NULL);
	stop_notified(&h);
	assert_int_equal(h.watchdog, 0);
	assert_false(logged_since(from, "watchdog: pinging"));
}

static void nothing_without_notify_socket(void **state)
{
	(void)state;
	heard h = { 0 };
	drain(&h);
	h = (heard){ 0 };
	harness_options o = { 0 };
	assert_true(harness_start(&H, &o));
	expect_health();
	assert_int_equal(harness_stop(&H), 0);
	drain(&h);
	assert_int_equal(h.ready + h.stopping + h.watchdog + h.other, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ready_health_stopping_watchdog),
		cmocka_unit_test(no_watchdog_without_watchdog_usec),
		cmocka_unit_test(nothing_without_notify_socket),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
