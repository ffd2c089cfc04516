/*
 * test_privilege_drop: kmsd started as root with [process] user = nobody
 * runs as nobody, with no capability, undumpable and without core dumps
 * (docs/security.md, "Privileges"; kms/kmsd_privs.h).
 *
 * The test folder (the SoftHSM token, the data dir, the socket's
 * directory) is given to nobody (uid 65534 on Debian: nothing is added to
 * the machine), as an operator would with chown -R.
 *
 * (1) runs_as_the_user: every thread of kmsd has nobody's four uids and
 *     gids and no capability (CapEff, CapPrm, CapInh, CapAmb), NoNewPrivs,
 *     core dumps off (/proc/PID/limits) and undumpable (/proc/PID/mem is
 *     root's while the process is nobody's: the kernel gives a
 *     non-dumpable process's /proc files to root). It serves CreateKey,
 *     Encrypt, Decrypt and RotateKey (which make token objects and store
 *     rows as nobody), a restart later decrypts the first blob and makes a
 *     new key, and nothing in the folder belongs to root afterwards.
 * (2) refuses_a_data_dir_of_another: a data dir with a file of root's:
 *     kmsd exits 1 saying which and the chown that fixes it.
 * (3) serves_only_after_the_drop: kmsd held (KMS_TEST_HOLD_BEFORE_SERVING,
 *     a FIFO) with its listeners bound but before the drop, while still
 *     root: an ipc connection made then waits in the socket's backlog (no
 *     thread accepted it: sock_diag says so), so does an HTTP one
 *     (/proc/net/tcp's accept queue), and the tls+tcp:// port is not bound
 *     (connect is refused). Released, kmsd becomes nobody, and only then
 *     answers the Health request written on that ipc connection, and every
 *     thread is nobody's.
 *
 * Needs root; skips, saying so, otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/transport/ipc_wire.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define USER "nobody"
#define STATUS_MAX 8192
#define EXIT_WAIT_MS 30000

static harness H;
static uid_t user_uid;
static gid_t user_gid;

/* Whether user USER can reach path (a child process becomes it and looks). */
static bool user_reaches(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(user_gid) != 0 || setuid(user_uid) != 0)
			_exit(2);
		struct stat st;
		_exit(stat(path, &st) == 0 ? 0 : 1);
	}
	int status = 0;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

static bool skipping(void)
{
	if (geteuid() != 0 || !getpwnam(USER)) {
		print_message("SKIPPED: starting kmsd as root and checking that it becomes user "
		              USER " needs root and that user\n");
		return true;
	}
	/* The test folder's parent (made 0700 by tests/support/with-token)
	 * must let the user through to the folder: search only, no listing. */
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	assert_non_null(dir);
	char parent[700];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	assert_non_null(slash);
	*slash = '\0';
	struct stat st;
	assert_int_equal(stat(parent, &st), 0);
	if (!(st.st_mode & S_IXOTH))
		assert_int_equal(chmod(parent, (st.st_mode & 07777) | S_IXOTH), 0);
	if (!user_reaches(parent)) {
		print_message("SKIPPED: user " USER " cannot reach %s (a directory above it is "
		              "closed to others); build elsewhere to run this test\n", parent);
		return true;
	}
	return false;
}

static char *read_small(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, STATUS_MAX);
	size_t len = buf ? fread(buf, 1, STATUS_MAX - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* "Uid:" or "Gid:" with all four ids want. */
static bool ids_are(const char *status, const char *field, unsigned want)
{
	const char *at = strstr(status, field);
	unsigned id[4];
	return at && sscanf(at + strlen(field), " %u %u %u %u", &id[0], &id[1], &id[2], &id[3]) ==
	                     4 && id[0] == want && id[1] == want && id[2] == want && id[3] == want;
}

static bool field_hex_zero(const char *status, const char *field)
{
	const char *at = strstr(status, field);
	unsigned long long v = 1;
	return at && sscanf(at + strlen(field), " %llx", &v) == 1 && v == 0;
}

/* Every task of kmsd: the user's ids, no capability, no_new_privs. */
static void check_every_task(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	unsigned tasks = 0;
	struct dirent *e;
	while ((e = readdir(d)) && tasks < 4096) {
		if (e->d_name[0] == '.')
			continue;
		char file[300];
		snprintf(file, sizeof file, "/proc/%d/task/%s/status", (int)pid, e->d_name);
		char *status = read_small(file);
		if (!status)
			continue; /* a thread that just ended */
		tasks++;
		if (!ids_are(status, "Uid:", user_uid) || !ids_are(status, "Gid:", user_gid))
			fail_msg("task %s is not all " USER "'s:\n%s", e->d_name, status);
		static const char *const caps[] = { "CapEff:", "CapPrm:", "CapInh:", "CapAmb:" };
		for (size_t i = 0; i < 4; i++)
			if (!field_hex_zero(status, caps[i]))
				fail_msg("task %s has %s not 0", e->d_name, caps[i]);
		if (!strstr(status, "NoNewPrivs:\t1"))
			fail_msg("task %s has no NoNewPrivs", e->d_name);
		free(status);
	}
	closedir(d);
	print_message("%u tasks of kmsd: uid/gid %u/%u, no capabilities\n", tasks,
	              (unsigned)user_uid, (unsigned)user_gid);
	assert_true(tasks > 1);
}

/* Core dumps off, and undumpable: a non-dumpable process's /proc/PID
 * files belong to root, whoever it runs as. */
static void check_no_dumps(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
	char *limits = read_small(path);
	assert_non_null(limits);
	const char *core = strstr(limits, "Max core file size");
	assert_non_null(core);
	unsigned long long soft = 1, hard = 1;
	assert_int_equal(sscanf(core, "Max core file size %llu %llu", &soft, &hard), 2);
	assert_true(soft == 0 && hard == 0);
	free(limits);
	snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if (st.st_uid != 0)
		fail_msg("%s belongs to uid %u: kmsd is dumpable", path, (unsigned)st.st_uid);
}

/* The first file under dir that is not the user's, or "". */
static char offender[1024];

static int not_users(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)type;
	(void)ftw;
	if (st->st_uid == user_uid)
		return 0;
	snprintf(offender, sizeof offender, "%s (uid %u)", path, (unsigned)st->st_uid);
	return 1;
}

static void check_all_users(const char *sub)
{
	char dir[700];
	snprintf(dir, sizeof dir, "%s/%s", H.dir, sub);
	offender[0] = '\0';
	assert_true(nftw(dir, not_users, 16, FTW_PHYS) >= 0);
	if (offender[0])
		fail_msg("%s is not " USER "'s", offender);
}

static void ok(Kms__Response *r)
{
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("status %d: %s", r->status, r->message ? r->message : "");
}

static void runs_as_the_user(void **state)
{
	(void)state;
	if (skipping())
		skip();
	harness_options o = { .run_as = USER };
	assert_true(harness_start(&H, &o));
	check_every_task(H.pid);
	check_no_dumps(H.pid);
	assert_true(harness_log_contains(&H, "running as user " USER));

	Kms__Response *k = e2e_create_key(&H);
	ok(k);
	char key[E2E_KEY_ID_SIZE];
	snprintf(key, sizeof key, "%s", k->create_key->key_metadata->key_id);
	kms__response__free_unpacked(k, NULL);
	Kms__Response *e = e2e_encrypt(&H, key, (const uint8_t *)"as nobody", 9);
	ok(e);
	size_t blob_len = e->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(blob_len);
	assert_non_null(blob);
	memcpy(blob, e->encrypt->ciphertext_blob.data, blob_len);
	kms__response__free_unpacked(e, NULL);
	Kms__Response *r = e2e_rotate(&H, key);
	ok(r);
	kms__response__free_unpacked(r, NULL);
	Kms__Response *dr = e2e_decrypt(&H, blob, blob_len);
	ok(dr);
	assert_memory_equal(dr->decrypt->plaintext.data, "as nobody", 9);
	kms__response__free_unpacked(dr, NULL);
	check_every_task(H.pid); /* the threads started by the requests too */
	assert_int_equal(harness_stop(&H), 0);

	/* Restarted: as root again, then nobody; what nobody made is read. */
	assert_true(harness_start(&H, &o));
	check_every_task(H.pid);
	dr = e2e_decrypt(&H, blob, blob_len);
	ok(dr);
	assert_memory_equal(dr->decrypt->plaintext.data, "as nobody", 9);
	kms__response__free_unpacked(dr, NULL);
	k = e2e_create_key(&H);
	ok(k);
	kms__response__free_unpacked(k, NULL);
	assert_int_equal(harness_stop(&H), 0);
	free(blob);
	check_all_users("data");
	check_all_users("tokens");
}

static void refuses_a_data_dir_of_another(void **state)
{
	(void)state;
	if (skipping())
		skip();
	/* Made by the harness as root, the store in it too; the config names
	 * the user, but the folder is not given to it. */
	harness h = { 0 };
	harness_options o = { .data_subdir = "data-of-root",
	                      .extra_config = "[process]\nuser = " USER "\n" };
	assert_true(harness_spawn(&h, &o));
	int code = 0;
	assert_true(e2e_wait_exit(&h, EXIT_WAIT_MS, &code));
	assert_int_equal(code, 1);
	char *log = harness_read_file(h.log, NULL);
	assert_non_null(log);
	char want[900];
	snprintf(want, sizeof want, "belongs to uid 0, not to " USER " ([process] user), who "
	         "kmsd runs as: chown -R " USER ":");
	if (!strstr(log, want))
		fail_msg("kmsd's log does not say \"%s\":\n%s", want, log);
	free(log);
}

/* ---- (3): nothing served before the drop ---- */

#define TCP_LISTEN_STATE 10 /* TCP_LISTEN, as sock_diag and /proc/net/tcp number it */

/* Connections waiting, not accepted, on the listening unix socket bound
 * at path (sock_diag's UNIX_DIAG_RQLEN), or -1 when none is found. */
static int unix_backlog(const char *path)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -1;
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req r;
	} req = {
		.nlh = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		         .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.r = { .sdiag_family = AF_UNIX, .udiag_states = 1u << TCP_LISTEN_STATE,
		       .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN },
	};
	int found = -1;
	bool done = send(fd, &req, sizeof req, 0) != (ssize_t)sizeof req;
	static char buf[65536];
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		int left = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, left);
		     h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			struct unix_diag_msg *m = NLMSG_DATA(h);
			int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
			const char *name = NULL;
			size_t name_len = 0;
			int queued = -1;
			for (struct rtattr *a = (struct rtattr *)(void *)(m + 1); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen)) {
				if (a->rta_type == UNIX_DIAG_NAME) {
					name = RTA_DATA(a);
					name_len = strnlen(name, RTA_PAYLOAD(a));
				} else if (a->rta_type == UNIX_DIAG_RQLEN) {
					struct unix_diag_rqlen q;
					memcpy(&q, RTA_DATA(a), sizeof q);
					queued = (int)q.udiag_rqueue;
				}
			}
			if (name && name_len == strlen(path) && !memcmp(name, path, name_len))
				found = queued;
		}
	}
	close(fd);
	return found;
}

/* Connections waiting, not accepted, on the listening TCP socket at
 * 127.0.0.1:port (/proc/net/tcp's rx_queue of a LISTEN line), or -1. */
static int tcp_backlog(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	int found = -1;
	while (f && fgets(line, sizeof line, f)) {
		unsigned addr, lport, st, tx, rx;
		if (sscanf(line, " %*u: %8X:%4X %*8X:%*4X %2X %8X:%8X", &addr, &lport, &st, &tx,
		           &rx) == 5 && lport == (unsigned)port && st == TCP_LISTEN_STATE)
			found = (int)rx;
	}
	if (f)
		fclose(f);
	return found;
}

/* Whether a TCP connect to 127.0.0.1:port is refused (nothing bound). */
static bool tcp_refused(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool refused = connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno == ECONNREFUSED;
	close(fd);
	return refused;
}

static int connect_stream(int family, const void *sa, socklen_t len)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (connect(fd, sa, len) != 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			fail_msg("the ipc connection made before the drop got no answer: %s",
			         r == 0 ? "closed" : strerror(errno));
		p += r;
		n -= (size_t)r;
	}
}

/* kmsd's log says it holds (bounded wait for that line). */
static void wait_log(const char *needle)
{
	for (int i = 0; i < 1500 * harness_time_scale(); i++) { /* 30 s, scaled */
		if (harness_log_contains(&H, needle))
			return;
		int status;
		if (waitpid(H.pid, &status, WNOHANG) == H.pid)
			fail_msg("kmsd exited before logging \"%s\"; see %s", needle, H.log);
		e2e_sleep_ms(20);
	}
	fail_msg("kmsd never logged \"%s\"; see %s", needle, H.log);
}

static void serves_only_after_the_drop(void **state)
{
	(void)state;
	if (skipping())
		skip();
	harness_stop(&H); /* a fresh harness: this case's own options */
	H = (harness){ 0 };
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	char fifo[700], fifo_env[760], extra[200];
	snprintf(fifo, sizeof fifo, "%s/hold-before-serving", dir);
	(void)unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(fifo_env, sizeof fifo_env, "KMS_TEST_HOLD_BEFORE_SERVING=%s", fifo);
	int http_port = harness_free_port();
	snprintf(extra, sizeof extra, "[audit]\nhttp = http://127.0.0.1:%d\n", http_port);
	const char *env[] = { fifo_env, NULL };
	harness_options o = { .run_as = USER, .with_tls = true, .extra_config = extra,
	                      .data_subdir = "data-held", .env = env };
	unsigned ready_before = harness_ready_lines(&H);
	assert_true(harness_spawn(&H, &o));
	wait_log("holding before serving");

	/* Held: still root (real and effective uid 0; files as nobody). */
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/status", (int)H.pid);
	char *status = read_small(path);
	assert_non_null(status);
	unsigned ru, eu, su, fu;
	const char *uid_line = strstr(status, "Uid:");
	assert_non_null(uid_line);
	assert_int_equal(sscanf(uid_line, "Uid: %u %u %u %u", &ru, &eu, &su, &fu), 4);
	free(status);
	assert_int_equal(ru, 0);
	assert_int_equal(eu, 0);
	assert_int_equal(fu, user_uid);

	/* An ipc peer connects and writes a Health request: nobody accepts. */
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	const char *sock_path = H.ipc_url + strlen("ipc://");
	assert_true(strlen(sock_path) < sizeof un.sun_path);
	memcpy(un.sun_path, sock_path, strlen(sock_path) + 1);
	int ipc = connect_stream(AF_UNIX, &un, sizeof un);
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = 1;
	req.request_id = "before-the-drop";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	uint8_t msg[256];
	const uint8_t backtrace[4] = { 0x80, 0, 0, 1 };
	memcpy(msg, backtrace, sizeof backtrace);
	size_t body = kms__request__pack(&req, msg + sizeof backtrace);
	uint8_t head[IPC_WIRE_HELLO_LEN + IPC_WIRE_FRAME_LEN];
	ipc_wire_hello(head, IPC_WIRE_PROTO_REQ);
	ipc_wire_frame(head + IPC_WIRE_HELLO_LEN, sizeof backtrace + body);
	write_all(ipc, head, sizeof head);
	write_all(ipc, msg, sizeof backtrace + body);
	assert_int_equal(unix_backlog(sock_path), 1);

	/* An HTTP peer waits in its backlog too; the TLS port is not bound. */
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int web = connect_stream(AF_INET, &in, sizeof in);
	assert_int_equal(tcp_backlog(http_port), 1);
	assert_true(tcp_refused(H.tls_port));

	/* Released: the drop, then serving. */
	int w = open(fifo, O_WRONLY | O_CLOEXEC);
	assert_true(w >= 0);
	close(w);
	struct timeval tv = { .tv_sec = 60 * harness_time_scale() };
	setsockopt(ipc, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint8_t hello[IPC_WIRE_HELLO_LEN], frame[IPC_WIRE_FRAME_LEN];
	read_all(ipc, hello, sizeof hello);
	assert_true(ipc_wire_hello_is(hello, IPC_WIRE_PROTO_REP));
	read_all(ipc, frame, sizeof frame);
	uint64_t len = 0;
	assert_true(ipc_wire_frame_len(frame, &len));
	assert_true(len > sizeof backtrace && len < 4096);
	uint8_t *reply = malloc(len);
	assert_non_null(reply);
	read_all(ipc, reply, len);
	assert_memory_equal(reply, backtrace, sizeof backtrace);
	Kms__Response *r = kms__response__unpack(NULL, len - sizeof backtrace,
	                                         reply + sizeof backtrace);
	free(reply);
	ok(r);
	kms__response__free_unpacked(r, NULL);
	close(ipc);
	close(web);
	/* "running as user" is logged before any "listening on" line. */
	char *log = harness_read_file(H.log, NULL);
	assert_non_null(log);
	const char *dropped = strstr(log, "running as user " USER);
	const char *listening = strstr(log, "listening on");
	assert_non_null(dropped);
	assert_non_null(listening);
	assert_true(dropped < listening);
	free(log);
	assert_true(harness_wait_ready(&H, ready_before));
	check_every_task(H.pid);
	assert_int_equal(harness_stop(&H), 0);
	(void)unlink(fifo);
}

static int setup(void **state)
{
	(void)state;
	struct passwd *pw = getpwnam(USER);
	if (pw) {
		user_uid = pw->pw_uid;
		user_gid = pw->pw_gid;
	}
	return 0;
}

int main(void)
{
	if (geteuid() != 0 || !getpwnam(USER)) { /* ctest reports 77 as skipped, not passed */
		printf("SKIPPED: starting kmsd as root and checking that it becomes user " USER
		       " needs root and that user\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runs_as_the_user),
		cmocka_unit_test(refuses_a_data_dir_of_another),
		cmocka_unit_test(serves_only_after_the_drop),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
