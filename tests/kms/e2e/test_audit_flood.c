/*
 * test_audit_flood: a local account kmsd does not know cannot fill the
 * audit log's disk with refusals (docs/audit-log.md, "Refusals before
 * authentication").
 *
 * Found: any local uid (unmapped, refused at admit) produced 9,175
 * denials/s, each its own entry: 3.2 MiB/s of log.bin, until the disk
 * filled and kmsd closed for everyone. Here a forked child drops to
 * nobody (65534), in the socket's group (kmsd's socket is 0660, group
 * [listen] ipc_group, in a 0750 directory), and opens connections to it
 * as fast as it can for FLOOD_MS, each sending NNG's SP hello and a
 * request (speaking the framing itself: no NNG in a forked child of a
 * threaded process). kmsd closes each at accept, before a byte is read or
 * sent, and counts it as a refusal. Then: entries written per second stay
 * bounded for the whole flood, each carries its count and span, and,
 * after a clean stop, the counts add up to exactly the connections the
 * child saw closed.
 *
 * many_uids_past_the_groups: 70 uids (more than the 64 groups kmsd
 * tracks) send 20 refusals each: at most 64 of them get entries of their
 * own, the rest are counted under "(other peers)", and the counts still
 * add up to exactly the 1,400 refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/sp_raw.h"

#define NOBODY 65534
#define FLOOD_MS 2000
#define REQUESTS_MAX 200000   /* bound on the loop, whatever the speed */
#define IO_TIMEOUT_S 5
#define CHILD_WAIT_MS 20000
/* A peer's refusals (one group: peer and reason) write at most one entry
 * per 5 s: the first at once, the count of the rest 5 s later or at
 * close. So a group that refused for T ms writes at most
 * 2 + T / GROUP_ENTRY_MS entries: 2 for the 2 s flood. */
#define GROUP_ENTRY_MS 5000
#define SKIPPED_EXIT_CODE 77

static harness H;
static bool g_skipped;
static char g_sock_dir[64]; /* nobody's way in: the token dir is root's alone */
static char g_sock[128];

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	if (g_sock[0])
		unlink(g_sock);
	if (g_sock_dir[0])
		rmdir(g_sock_dir);
	g_sock[0] = g_sock_dir[0] = '\0';
	return 0;
}

/* One refused connection: connect, say hello and send a Health request
 * (either may fail: kmsd may have closed already), then read. True when
 * kmsd closed it without sending a byte, as it does to an unmapped uid. */
static bool refused_connection(const char *path, const uint8_t *req, size_t n)
{
	int fd = sp_raw_unix_connect(path, IO_TIMEOUT_S);
	if (fd < 0)
		return false;
	uint8_t head[SP_RAW_IPC_HEAD], got[16];
	sp_raw_ipc_head(head, 0, n);
	(void)(sp_raw_put_all(fd, sp_raw_req_hello, sizeof sp_raw_req_hello) &&
	       sp_raw_put_all(fd, head, sizeof head) && sp_raw_put_all(fd, req, n));
	ssize_t r;
	do
		r = read(fd, got, sizeof got);
	while (r < 0 && errno == EINTR);
	bool closed = r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE));
	close(fd);
	return closed;
}

/* The child: uid (in the socket's group, 65534, so the file's mode lets
 * it connect), connecting as fast as it can for at most ms or
 * requests_max connections. Writes the number of connections made and of
 * those kmsd closed without a byte to out, then exits. */
static void flood(const char *path, uid_t uid, uint64_t ms, uint32_t requests_max, int out)
{
	uint64_t counts[2] = { 0, 0 };
	const gid_t socket_group = NOBODY;
	signal(SIGPIPE, SIG_IGN); /* kmsd closes before the request is written */
	if (setgroups(1, &socket_group) != 0 || setgid(uid) != 0 || setuid(uid) != 0)
		_exit(2);
	if (strlen(path) >= sizeof((struct sockaddr_un){ 0 }).sun_path)
		_exit(7);
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "flood";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	uint8_t body[128];
	size_t n = kms__request__pack(&req, body);
	uint64_t deadline = e2e_now_ms() + ms;
	for (uint32_t i = 0; i < requests_max && e2e_now_ms() < deadline; i++) {
		counts[0]++;
		if (!refused_connection(path, body, n))
			_exit(5);
		counts[1]++;
	}
	_exit(sp_raw_put_all(out, counts, sizeof counts) ? 0 : 6);
}

/* Runs flood() in a child as uid; returns the ACCESS_DENIED replies it got
 * (and the requests it sent in *sent). Fails the test if the child fails. */
static uint64_t run_flood(uid_t uid, uint64_t ms, uint32_t requests_max, uint64_t *sent)
{
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	uint64_t started = e2e_now_ms();
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(pipefd[0]);
		flood(g_sock, uid, ms, requests_max, pipefd[1]);
	}
	close(pipefd[1]);
	uint64_t counts[2] = { 0, 0 };
	bool got = false;
	for (uint64_t until = started + CHILD_WAIT_MS; !got && e2e_now_ms() < until;) {
		ssize_t r = read(pipefd[0], counts, sizeof counts);
		got = r == (ssize_t)sizeof counts;
		if (r == 0 || (r < 0 && errno != EINTR))
			break;
	}
	close(pipefd[0]);
	int wstatus = 0;
	assert_int_equal(waitpid(child, &wstatus, 0), child);
	if (!got || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
		fail_msg("the flooding child (uid %u) failed (exit %d): see %s", (unsigned)uid,
		         WEXITSTATUS(wstatus), H.log);
	*sent = counts[0];
	return counts[1];
}

/* kmsd with a second ipc listener in a directory any uid may search (the
 * test's own directory sits in a root-only one). */
static void start_kmsd(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "SKIPPED: acting as other uids needs root; the flood is NOT "
		        "tested\n");
		g_skipped = true;
		skip();
	}
	snprintf(g_sock_dir, sizeof g_sock_dir, "/tmp/kms-flood-XXXXXX");
	assert_non_null(mkdtemp(g_sock_dir));
	assert_int_equal(chown(g_sock_dir, 0, NOBODY), 0);
	assert_int_equal(chmod(g_sock_dir, 0750), 0);
	snprintf(g_sock, sizeof g_sock, "%s/kms.sock", g_sock_dir);
	char extra[256];
	snprintf(extra, sizeof extra, "[listen]\nurl = ipc://%s\nipc_group = %d\n", g_sock,
	         NOBODY);
	harness_options o = { .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
}

/* Stops kmsd cleanly (the counts pending are written then) and loads its
 * verified log. */
static void stop_and_load(audit_entries *e)
{
	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_load(pub, cp.vkey, NULL, e);
	audit_cp_free(&cp);
}

static void unmapped_uid_cannot_fill_the_disk(void **state)
{
	(void)state;
	start_kmsd();
	char log_bin[700];
	audit_dir(&H, NULL, log_bin, sizeof log_bin - 16);
	strcat(log_bin, "/log.bin");
	struct stat before, after;
	assert_int_equal(stat(log_bin, &before), 0);

	uint64_t counts[2];
	uint64_t started = e2e_now_ms();
	counts[1] = run_flood(NOBODY, FLOOD_MS, REQUESTS_MAX, &counts[0]);
	uint64_t flood_ms = e2e_now_ms() - started;
	assert_int_equal(stat(log_bin, &after), 0);
	uint64_t grown = (uint64_t)(after.st_size - before.st_size);
	assert_true(counts[1] > 100); /* it did flood */

	audit_entries e;
	stop_and_load(&e); /* the last burst's count is written at close */
	uint64_t entries = 0, refused = 0;
	for (uint64_t i = 0; i < e.n; i++) {
		json_t *entry = e.items[i];
		if (strcmp(audit_str(entry, "principal"), "uid:65534") != 0)
			continue;
		audit_check_common(entry);
		entries++;
		assert_string_equal(audit_str(entry, "status"), "ACCESS_DENIED");
		json_t *count = json_object_get(entry, "refused");
		assert_true(json_is_integer(count) && json_integer_value(count) >= 1);
		refused += (uint64_t)json_integer_value(count);
		const char *first = audit_str(entry, "first"), *last = audit_str(entry, "last");
		assert_int_equal(strlen(first), 27);
		assert_true(strcmp(first, last) <= 0);
		assert_non_null(strstr(audit_str(entry, "error"), "[ipc_principals]"));
	}
	double secs = (double)flood_ms / 1000.0;
	fprintf(stderr, "flood: %llu requests, %llu denials in %llu ms (%.0f denials/s); "
	        "%llu entries (%.1f entries/s) counting %llu denials; log.bin grew %llu bytes "
	        "during the flood (%.0f bytes/s)\n",
	        (unsigned long long)counts[0], (unsigned long long)counts[1],
	        (unsigned long long)flood_ms, (double)counts[1] / secs,
	        (unsigned long long)entries, (double)entries / secs, (unsigned long long)refused,
	        (unsigned long long)grown, (double)grown / secs);
	uint64_t entries_max = 2 + flood_ms / GROUP_ENTRY_MS;
	if (entries > entries_max)
		fail_msg("%llu entries for one peer's %llu denials in %llu ms: more than %llu",
		         (unsigned long long)entries, (unsigned long long)counts[1],
		         (unsigned long long)flood_ms, (unsigned long long)entries_max);
	assert_int_equal(refused, counts[1]);
	audit_entries_free(&e);
}

#define MANY_UIDS 70        /* more than the 64 groups kmsd tracks */
#define MANY_UID_BASE 70000 /* unmapped, and no one's */
#define MANY_EACH 20
#define GROUPS_MAX 64

static void many_uids_past_the_groups(void **state)
{
	(void)state;
	start_kmsd();
	uint64_t denials = 0, sent, started = e2e_now_ms();
	for (uid_t i = 0; i < MANY_UIDS; i++) {
		uint64_t got = run_flood(MANY_UID_BASE + i, CHILD_WAIT_MS, MANY_EACH, &sent);
		assert_int_equal(got, MANY_EACH);
		denials += got;
	}
	uint64_t elapsed_ms = e2e_now_ms() - started;
	audit_entries e;
	stop_and_load(&e);
	uint64_t refused = 0, entries = 0, other = 0;
	bool seen[MANY_UIDS] = { false };
	for (uint64_t i = 0; i < e.n; i++) {
		json_t *entry = e.items[i];
		const char *principal = audit_str(entry, "principal");
		unsigned uid = 0;
		bool ours = sscanf(principal, "uid:%u", &uid) == 1 && uid >= MANY_UID_BASE &&
		            uid < MANY_UID_BASE + MANY_UIDS;
		bool others = !strcmp(principal, "(other peers)");
		if (!ours && !others)
			continue;
		audit_check_common(entry);
		entries++;
		refused += (uint64_t)json_integer_value(json_object_get(entry, "refused"));
		if (ours)
			seen[uid - MANY_UID_BASE] = true;
		else
			other += (uint64_t)json_integer_value(json_object_get(entry, "refused"));
	}
	size_t groups = 0;
	for (size_t i = 0; i < MANY_UIDS; i++)
		groups += seen[i];
	fprintf(stderr, "many uids: %llu denials from %d uids: %llu entries, %zu uids with "
	        "their own, %llu refusals under (other peers)\n", (unsigned long long)denials,
	        MANY_UIDS, (unsigned long long)entries, groups, (unsigned long long)other);
	assert_true(groups <= GROUPS_MAX);
	assert_int_equal(other, (uint64_t)(MANY_UIDS - groups) * MANY_EACH);
	/* Each group (64 uids and "other peers"): its first refusal at once,
	 * the rest at close, and one more per 5 s the refusals lasted. */
	assert_true(entries <= (GROUPS_MAX + 1) * (2 + elapsed_ms / GROUP_ENTRY_MS));
	assert_int_equal(refused, denials);
	audit_entries_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(unmapped_uid_cannot_fill_the_disk, teardown),
		cmocka_unit_test_teardown(many_uids_past_the_groups, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed == 0 && g_skipped ? SKIPPED_EXIT_CODE : failed;
}
