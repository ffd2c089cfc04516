#include "tests/support/harness.h"
#include "tests/support/pg_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kms/sign.h>
#include "common/error.h"
#include "kms/store/db.h"
#include "kms/store/db_pg.h"
#include "kms/store/store.h"

#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#define CALL_TIMEOUT_MS 20000
#define NNG_FINI_AT_EXIT_MS 30000

/* At exit, before LeakSanitizer looks: NNG frees a closed socket's dialer
 * and pipes on its reaper thread after nng_close returns, and a test that
 * exits while that runs would be reported as leaking them. */
static void nng_fini_at_exit(void)
{
	/* Generous: normally a few ms, but on a loaded machine (the sanitizer
	 * lane beside other work) 2 s was seen to pass with the reaper busy. */
	(void)kms_nng_fini_bounded(NNG_FINI_AT_EXIT_MS);
}

static void register_nng_fini(void)
{
	atexit(nng_fini_at_exit);
}

/* Every bounded wait on kmsd is this many times longer when kmsd runs
 * under a wrapper (KMS_TEST_KMSD_WRAPPER, e.g. valgrind, 20 to 50 times
 * slower): KMS_TEST_TIME_SCALE (1..100), by default 10 with a wrapper and
 * 1 without. */
int harness_time_scale(void)
{
	const char *v = getenv("KMS_TEST_TIME_SCALE");
	const char *w = getenv("KMS_TEST_KMSD_WRAPPER");
	int n = v && *v ? atoi(v) : (w && *w ? 10 : 1);
	return n < 1 ? 1 : n > 100 ? 100 : n;
}

/* execv of kmsd with args (args[0] is kmsd), behind the words of
 * KMS_TEST_KMSD_WRAPPER when set ("valgrind --leak-check=full ..."; split
 * at spaces, at most WRAPPER_WORDS words, no quoting). Returns only on
 * failure, in the child. */
#define WRAPPER_WORDS 32
#define KMSD_ARGS 16
static void exec_kmsd(char *const *args)
{
	static char words[4096];
	char *argv[WRAPPER_WORDS + KMSD_ARGS + 1];
	size_t n = 0;
	const char *w = getenv("KMS_TEST_KMSD_WRAPPER");
	if (w && *w && strlen(w) < sizeof words) {
		snprintf(words, sizeof words, "%s", w);
		char *save = NULL;
		for (char *t = strtok_r(words, " ", &save); t && n < WRAPPER_WORDS;
		     t = strtok_r(NULL, " ", &save))
			argv[n++] = t;
	}
	for (size_t i = 0; args[i] && i < KMSD_ARGS; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	execvp(argv[0], argv);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int harness_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void data_dir_of(const harness *h, const harness_options *o, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", h->dir, o && o->data_subdir ? o->data_subdir : "data");
}

/* The data dir whose store the kmsd of o uses: its own, or store_of's. */
static void store_dir_of(const harness *h, const harness_options *o, char *out, size_t cap)
{
	if (o && o->store_of)
		snprintf(out, cap, "%s", o->store_of);
	else
		data_dir_of(h, o, out, cap);
}

/* Under with-postgres every data dir has a store of its own, as with
 * SQLite: a schema named after the data dir's path (kmsd's connections use
 * it through the URL's search_path), emptied while the data dir does not
 * exist yet, so a fresh data dir is a fresh store. The URL into out. */
static bool pg_store_url(const char *data, char *out, size_t cap)
{
	const char *base = getenv("KMS_TEST_PG_URL");
	uint64_t hash = 14695981039346656037ull; /* FNV-1a */
	for (const char *c = data; *c; c++)
		hash = (hash ^ (uint8_t)*c) * 1099511628211ull;
	char schema[32];
	snprintf(schema, sizeof schema, "kms_%016llx", (unsigned long long)hash);
	int n = snprintf(out, cap, "%s%soptions=-csearch_path%%3D%s", base,
	                 strchr(base, '?') ? "&" : "?", schema);
	if (n < 0 || (size_t)n >= cap)
		return false;
	struct stat sb;
	if (stat(data, &sb) == 0)
		return true;
	char password[256];
	if (!pg_test_password(password, sizeof password))
		return false;
	db_pg_config cfg = { .url = base, .password = password };
	db_conn *c = NULL;
	if (db_pg_open(&cfg, &c) != KMS_OK) {
		fprintf(stderr, "harness: %s\n", kms_error_message());
		return false;
	}
	char sql[160];
	snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema,
	         schema);
	bool ok = db_exec(c, sql) == DB_OK;
	if (!ok)
		fprintf(stderr, "harness: %s: %s: %s\n", sql, db_conn_errstr(c), db_conn_errmsg(c));
	db_close(c);
	return ok;
}

bool harness_store_url(const harness *h, const harness_options *opts, char *out, size_t cap)
{
	if (!getenv("KMS_TEST_PG_URL") || !h->dir[0])
		return false;
	char data[700];
	store_dir_of(h, opts, data, sizeof data);
	struct stat sb;
	return stat(data, &sb) == 0 && pg_store_url(data, out, cap); /* never empties it */
}

bool harness_replica_init(harness *h, const char *name)
{
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	if (!dir || h->dir[0])
		return false;
	int n = snprintf(h->dir, sizeof h->dir, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof h->dir || (mkdir(h->dir, 0700) != 0 && errno != EEXIST))
		return false;
	snprintf(h->config, sizeof h->config, "%s/kmsd.ini", h->dir);
	snprintf(h->log, sizeof h->log, "%s/kmsd.log", h->dir);
	snprintf(h->ipc_url, sizeof h->ipc_url, "ipc://%s/kms.sock", h->dir);
	h->tls_port = harness_free_port();
	snprintf(h->tls_url, sizeof h->tls_url, "tls+tcp://127.0.0.1:%d", h->tls_port);
	return true;
}

/* A connection to the store of h's kmsd, or NULL saying why. */
static db_conn *store_connect(const harness *h, const harness_options *opts)
{
	char url[1024], password[256];
	if (!harness_store_url(h, opts, url, sizeof url) ||
	    !pg_test_password(password, sizeof password))
		return NULL;
	db_pg_config cfg = { .url = url, .password = password };
	db_conn *c = NULL;
	if (db_pg_open(&cfg, &c) != KMS_OK) {
		fprintf(stderr, "harness: %s\n", kms_error_message());
		return NULL;
	}
	return c;
}

bool harness_store_exec(const harness *h, const harness_options *opts, const char *sql)
{
	db_conn *c = store_connect(h, opts);
	if (!c)
		return false;
	bool ok = db_exec(c, sql) == DB_OK;
	if (!ok)
		fprintf(stderr, "harness: %s: %s: %s\n", sql, db_conn_errstr(c), db_conn_errmsg(c));
	db_close(c);
	return ok;
}

bool harness_store_query(const harness *h, const harness_options *opts, const char *sql,
                         char *out, size_t cap)
{
	if (out && cap)
		out[0] = '\0';
	db_conn *c = store_connect(h, opts);
	if (!c)
		return false;
	db_stmt *s = NULL;
	db_rc rc = db_prepare(c, sql, &s);
	if (rc == DB_OK)
		rc = db_step(s);
	bool ok = rc == DB_ROW || rc == DB_DONE;
	if (rc == DB_ROW && out && cap) {
		const char *v = db_column_text(s, 0);
		snprintf(out, cap, "%s", v ? v : "");
	}
	if (!ok)
		fprintf(stderr, "harness: %s: %s: %s\n", sql, s ? db_errstr(s) : db_conn_errstr(c),
		        s ? db_errmsg(s) : db_conn_errmsg(c));
	db_finalize(s);
	db_close(c);
	return ok;
}

static bool write_config(harness *h, const harness_options *o)
{
	const char *pin = getenv("KMS_TEST_PIN_FILE");
	const char *label = getenv("KMS_TEST_TOKEN_LABEL");
	const char *module = getenv("KMS_TEST_MODULE");
	FILE *f = fopen(h->config, "w");
	if (!f || !pin || !label)
		return false;
	fprintf(f, "[kmsd]\nregion = %s\ndata_dir = %s/%s\nworkers = %u\n\n", h->region, h->dir,
	        o->data_subdir ? o->data_subdir : "data", o->workers ? o->workers : 4);
	fprintf(f, "[listen]\nurl = %s\n", h->ipc_url);
	if (o->with_tls)
		fprintf(f, "url = %s\n", h->tls_url);
	fprintf(f, "\n[hsm]\nmodule = %s\ntoken_label = %s\npin_file = %s\n\n",
	        module ? module : "/usr/lib/softhsm/libsofthsm2.so", label, pin);
	if (o->with_tls)
		fprintf(f, "[tls]\ncert_file = %s/tls/server.crt\nkey_file = %s/tls/server.key\n"
		           "client_ca_file = %s/tls/ca.crt\n\n", h->dir, h->dir, h->dir);
	fprintf(f, "[ipc_principals]\n%u = test-admin\n\n", (unsigned)getuid());
	if (o->default_key_policy && !o->default_key_policy[0])
		; /* kmsd's built-in default */
	else if (o->default_key_policy)
		fprintf(f, "[authz]\ndefault_key_policy = %s\n\n", o->default_key_policy);
	else
		fprintf(f, "[authz]\ndefault_key_policy = %s/test-admin-policy.json\n\n", h->dir);
	if (o->extra_config)
		fprintf(f, "%s\n", o->extra_config);
	if (o->run_as)
		fprintf(f, "[process]\nuser = %s\n\n", o->run_as);
	/* Under tests/support/with-postgres: the store on its PostgreSQL. */
	bool ok = true;
	if (getenv("KMS_TEST_PG_URL")) {
		char data[700], url[1024];
		store_dir_of(h, o, data, sizeof data);
		ok = pg_store_url(data, url, sizeof url);
		fprintf(f, "[store]\nurl = %s\npassword_file = %s\n\n", url,
		        getenv("KMS_TEST_PG_PASSWORD_FILE"));
	}
	return fclose(f) == 0 && ok;
}

/* The credentials file's value of key, into out (cap bytes); false if none. */
static bool credentials_value(const char *text, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) || strncmp(line + klen, " = ", 3))
			continue;
		const char *v = line + klen + 3;
		size_t n = strcspn(v, "\n");
		if (n >= cap)
			return false;
		memcpy(out, v, n);
		out[n] = '\0';
		return true;
	}
	return false;
}

/* `kmsd --bootstrap-admin`, bounded (60 s), then its credentials read back. */
static bool bootstrap(harness *h, const char *kmsd)
{
	snprintf(h->credentials, sizeof h->credentials, "%s/credentials", h->dir);
	snprintf(h->secret_file, sizeof h->secret_file, "%s/secret.hex", h->dir);
	char out[700];
	snprintf(out, sizeof out, "%s/bootstrap.out", h->dir);
	unlink(h->credentials);
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
		}
		char *args[] = { (char *)(uintptr_t)kmsd, "-c", h->config, "--bootstrap-admin",
			         HARNESS_ADMIN, "--credentials-out", h->credentials, "--roles",
			         "admin,app,auditor", NULL };
		exec_kmsd(args);
		_exit(127);
	}
	int status = -1;
	for (int i = 0; i < 6000 * harness_time_scale() && waitpid(pid, &status, WNOHANG) != pid;
	     i++)
		sleep_ms(10);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, WNOHANG);
		fprintf(stderr, "harness: kmsd --bootstrap-admin failed; see %s\n", out);
		return false;
	}
	char *text = harness_read_file(h->credentials, NULL);
	char hex[80];
	bool ok = text && credentials_value(text, "access_key_id", h->access_key_id,
	                                    sizeof h->access_key_id) &&
	          credentials_value(text, "secret", hex, sizeof hex) && strlen(hex) == 64;
	for (size_t i = 0; ok && i < 32; i++) {
		unsigned b;
		ok = sscanf(hex + 2 * i, "%2x", &b) == 1;
		h->secret[i] = (uint8_t)b;
	}
	free(text);
	FILE *f = ok ? fopen(h->secret_file, "w") : NULL;
	ok = f && fprintf(f, "%s\n", hex) > 0;
	if (f)
		ok = fclose(f) == 0 && ok;
	chmod(h->secret_file, 0600);
	if (!ok) {
		fprintf(stderr, "harness: cannot read the credentials in %s\n", h->credentials);
		h->access_key_id[0] = '\0';
	}
	return ok;
}

bool harness_sign(harness *h, Kms__Request *req, int64_t timestamp, Kms__Credential *cred,
                  uint8_t mac[32])
{
	kms__credential__init(cred);
	if (!h->access_key_id[0] ||
	    kms_sign_request_mac(req, h->secret, timestamp, mac) != KMS_OK)
		return false;
	cred->access_key_id = h->access_key_id;
	cred->timestamp_unix = timestamp;
	cred->mac.data = mac;
	cred->mac.len = KMS_SIGN_MAC_LEN;
	req->credential = cred;
	return true;
}

bool harness_add_principal(harness *h, const harness_options *opts, const char *name,
                           unsigned roles)
{
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	if (!h->dir[0] && !dir)
		return false;
	char data[700];
	if (!h->dir[0])
		snprintf(data, sizeof data, "%s/%s", dir,
		         opts && opts->data_subdir ? opts->data_subdir : "data");
	else
		data_dir_of(h, opts, data, sizeof data);
	char pg_password[256] = "", pg_url[1024], store_dir[700];
	store_options so = { .data_dir = data, .pg_password = pg_password, .pg_exclusive = true };
	if (opts && opts->store_of)
		snprintf(store_dir, sizeof store_dir, "%s", opts->store_of);
	else
		snprintf(store_dir, sizeof store_dir, "%s", data);
	if (getenv("KMS_TEST_PG_URL")) {
		if (!pg_store_url(store_dir, pg_url, sizeof pg_url) ||
		    !pg_test_password(pg_password, sizeof pg_password))
			return false;
		so.pg_url = pg_url;
	}
	if (mkdir(data, 0700) != 0 && errno != EEXIST)
		return false;
	store *st = NULL;
	bool created = false;
	kms_status opened = KMS_FAILED_PRECONDITION;
	/* A kmsd just stopped may still hold the lock for a moment: bounded
	 * (on PostgreSQL the store itself asks again for 10 s). */
	int tries = so.pg_url ? 1 : 100;
	for (int i = 0; i < tries && opened == KMS_FAILED_PRECONDITION; i++) {
		opened = store_open_with(&so, &st, &created);
		if (opened == KMS_FAILED_PRECONDITION)
			sleep_ms(100);
	}
	if (opened != KMS_OK) {
		fprintf(stderr, "harness: cannot open the store in %s (is kmsd running?)\n", data);
		return false;
	}
	store_principal p = { .roles = roles, .state = PRINCIPAL_STATE_ENABLED,
	                      .created_at = time(NULL), .updated_at = time(NULL) };
	snprintf(p.name, sizeof p.name, "%s", name);
	kms_status s = store_principal_create(st, &p);
	store_close(st);
	if (s != KMS_OK && s != KMS_ALREADY_EXISTS) {
		fprintf(stderr, "harness: cannot create principal %s\n", name);
		return false;
	}
	return true;
}

/* The default key policy of every harness kmsd: test-admin may do
 * everything. */
/* nftw has no argument for its callback: the owner run_as names. */
static uid_t chown_uid;
static gid_t chown_gid;

static int chown_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return lchown(path, chown_uid, chown_gid) == 0 ? 0 : -1;
}

/* The whole test folder to user run_as and its group. */
static bool give_to(const harness *h, const char *run_as)
{
	struct passwd *pw = getpwnam(run_as);
	if (!pw) {
		fprintf(stderr, "harness: no user %s\n", run_as);
		return false;
	}
	chown_uid = pw->pw_uid;
	chown_gid = pw->pw_gid;
	if (nftw(h->dir, chown_one, 16, FTW_PHYS) != 0) {
		fprintf(stderr, "harness: cannot give %s to %s: %s\n", h->dir, run_as,
		        strerror(errno));
		return false;
	}
	return true;
}

/* Principal test-admin in the store; with run_as, as that user (the
 * store refuses a file that is not its process's: this thread takes the
 * user's filesystem ids for the while). */
static bool add_admin(harness *h, const harness_options *o)
{
	struct passwd *pw = o->run_as ? getpwnam(o->run_as) : NULL;
	if (o->run_as && !pw)
		return false;
	if (pw && !give_to(h, o->run_as))
		return false;
	uid_t was_uid = pw ? (uid_t)setfsuid(pw->pw_uid) : 0;
	gid_t was_gid = pw ? (gid_t)setfsgid(pw->pw_gid) : 0;
	bool ok = harness_add_principal(h, o, HARNESS_ADMIN, PRINCIPAL_ROLES_ALL);
	if (pw) {
		setfsgid(was_gid);
		setfsuid(was_uid);
	}
	return ok;
}

static bool write_test_admin_policy(harness *h)
{
	char path[700];
	snprintf(path, sizeof path, "%s/test-admin-policy.json", h->dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f, "{\"Version\": \"2024-01-01\", \"Statement\": [{\"Sid\": \"test-admin-all\", "
	           "\"Effect\": \"Allow\", \"Principal\": \"" HARNESS_ADMIN "\", \"Action\": \"*\"}]}\n");
	return fclose(f) == 0;
}

bool harness_spawn(harness *h, const harness_options *opts)
{
	static pthread_once_t fini_once = PTHREAD_ONCE_INIT;
	(void)pthread_once(&fini_once, register_nng_fini);
	harness_options none = { 0 };
	const harness_options *o = opts ? opts : &none;
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	const char *kmsd = getenv("KMS_TEST_KMSD");
	if (!dir || !kmsd) {
		fprintf(stderr, "harness: KMS_TEST_TOKEN_DIR and KMS_TEST_KMSD must be set\n");
		return false;
	}
	if (!h->dir[0]) {
		snprintf(h->dir, sizeof h->dir, "%s", dir);
		snprintf(h->config, sizeof h->config, "%s/kmsd.ini", dir);
		snprintf(h->log, sizeof h->log, "%s/kmsd.log", dir);
		snprintf(h->ipc_url, sizeof h->ipc_url, "ipc://%s/kms.sock", dir);
		h->tls_port = harness_free_port();
		snprintf(h->tls_url, sizeof h->tls_url, "tls+tcp://127.0.0.1:%d", h->tls_port);
	}
	snprintf(h->region, sizeof h->region, "%s", o->region ? o->region : "in-mum");
	if (o->with_tls) {
		char cmd[1200];
		snprintf(cmd, sizeof cmd, "%s/make-certs %s/tls", getenv("KMS_TEST_SCRIPTS"), h->dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "harness: %s failed\n", cmd);
			return false;
		}
	}
	if (!write_test_admin_policy(h) || !write_config(h, o)) {
		fprintf(stderr, "harness: cannot write %s or the default key policy\n", h->config);
		return false;
	}
	/* The default authorization of every harness kmsd: principal
	 * test-admin with every role, mapped to the test's uid. With an access
	 * key (for signed requests) it comes from `kmsd --bootstrap-admin` on
	 * the fresh data dir; otherwise straight into the store. */
	if ((o->bootstrap || o->with_tls) && !h->access_key_id[0]) {
		/* kmsd --bootstrap-admin, as root, also makes its files as run_as. */
		if ((o->run_as && !give_to(h, o->run_as)) || !bootstrap(h, kmsd))
			return false;
	} else if (!add_admin(h, o)) {
		fprintf(stderr, "harness: cannot create principal " HARNESS_ADMIN " in the store\n");
		return false;
	}
	if (o->run_as && !give_to(h, o->run_as))
		return false;
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
		}
		if (o->crash_at)
			setenv("KMS_TEST_CRASH_AT", o->crash_at, 1);
		else
			unsetenv("KMS_TEST_CRASH_AT");
		for (const char *const *e = o->env; e && *e; e++)
			putenv((char *)(uintptr_t)*e);
		/* Under ASan: LeakSanitizer matches tests/support/lsan.supp's library
		 * frames (libsofthsm2.so) only if malloc stacks are unwound
		 * through OpenSSL, which the fast unwinder cannot do. */
		const char *asan = getenv("ASAN_OPTIONS");
		if (asan && !strstr(asan, "fast_unwind_on_malloc")) {
			char options[1024];
			int n = snprintf(options, sizeof options, "%s%sfast_unwind_on_malloc=0", asan,
			                 asan[0] ? ":" : "");
			if (n > 0 && (size_t)n < sizeof options)
				setenv("ASAN_OPTIONS", options, 1);
		}
		char *args[] = { (char *)(uintptr_t)kmsd, "-c", h->config, NULL };
		exec_kmsd(args);
		_exit(127);
	}
	h->pid = pid;
	return true;
}

/* blocking: connect before returning (kmsd is known to listen), so the
 * socket never sits in NNG's reconnect loop: NNG 1.5.2 leaks the pipe of a
 * reconnect that completes while the socket is being closed. Otherwise the
 * dial completes in the background, for calls made while kmsd restarts. */
static bool open_ipc(harness *h, bool blocking)
{
	if (h->ipc_open)
		return true;
	if (nng_req0_open(&h->ipc) != 0)
		return false;
	nng_socket_set_ms(h->ipc, NNG_OPT_RECVTIMEO, CALL_TIMEOUT_MS * harness_time_scale());
	nng_socket_set_ms(h->ipc, NNG_OPT_SENDTIMEO, CALL_TIMEOUT_MS * harness_time_scale());
	nng_socket_set_ms(h->ipc, NNG_OPT_REQ_RESENDTIME, 0);
	nng_socket_set_size(h->ipc, NNG_OPT_RECVMAXSZ, 64u << 20);
	if (nng_dial(h->ipc, h->ipc_url, NULL, blocking ? 0 : NNG_FLAG_NONBLOCK) != 0) {
		(void)kms_nng_close_bounded(h->ipc, TEST_CLOSE_WAIT_MS);
		return false;
	}
	h->ipc_open = true;
	return true;
}

/* How many times kmsd's log says it is ready (the log is appended to
 * across restarts of one harness). */
static unsigned ready_lines(const harness *h)
{
	char path[sizeof h->log];
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	if (h->log[0])
		snprintf(path, sizeof path, "%s", h->log);
	else if (dir) /* where harness_spawn will put it */
		snprintf(path, sizeof path, "%s/kmsd.log", dir);
	else
		return 0;
	char *log = harness_read_file(path, NULL);
	unsigned n = 0;
	for (const char *p = log; p && (p = strstr(p, "kmsd: info: ready: ")); p++)
		n++;
	free(log);
	return n;
}

bool harness_start(harness *h, const harness_options *opts)
{
	unsigned ready_before = ready_lines(h);
	if (!harness_spawn(h, opts))
		return false;
	return harness_wait_ready(h, ready_before);
}

unsigned harness_ready_lines(const harness *h)
{
	return ready_lines(h);
}

bool harness_wait_ready(harness *h, unsigned ready_before)
{
	/* Wait for kmsd to answer on a throw-away socket and to log that it is
	 * ready (every listener up: ipc answers before tls+tcp:// and http
	 * listen), then dial the harness's own socket once, to a listener known
	 * to be there. */
	bool answered = false;
	for (int i = 0; i < 300 * harness_time_scale(); i++) { /* 15 s, scaled */
		int status;
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			fprintf(stderr, "harness: kmsd exited during start-up; see %s\n", h->log);
			h->pid = 0;
			return false;
		}
		uint8_t *reply;
		size_t len;
		Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		req.schema_version = 1;
		req.request_id = "harness-ready";
		req.op_case = KMS__REQUEST__OP_HEALTH;
		req.health = &health;
		uint8_t buf[256];
		size_t n = kms__request__pack(&req, buf);
		if (!answered) {
			reply = harness_raw(h->ipc_url, buf, n, 200, &len);
			answered = reply != NULL;
			free(reply);
		}
		if (answered && ready_lines(h) > ready_before) {
			/* Under with-postgres a kmsd on SQLite would pass the test
			 * while testing nothing of PostgreSQL. */
			if (getenv("KMS_TEST_PG_URL") &&
			    !harness_log_contains(h, "store: PostgreSQL at")) {
				fprintf(stderr, "harness: KMS_TEST_PG_URL is set but kmsd did not log "
				        "\"store: PostgreSQL at\"; see %s\n", h->log);
				return false;
			}
			return open_ipc(h, true);
		}
		sleep_ms(50);
	}
	fprintf(stderr, "harness: kmsd did not answer Health and log \"ready:\" within %d s; "
	        "see %s\n", 15 * harness_time_scale(), h->log);
	return false;
}

int harness_stop(harness *h)
{
	if (h->ipc_open) {
		(void)kms_nng_close_bounded(h->ipc, TEST_CLOSE_WAIT_MS);
		h->ipc_open = false;
	}
	if (h->pid <= 0)
		return -1;
	kill(h->pid, SIGTERM);
	for (int i = 0; i < 1500 * harness_time_scale(); i++) {
		int status;
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			h->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		sleep_ms(10);
	}
	harness_kill9(h);
	return -1;
}

void harness_kill9(harness *h)
{
	if (h->ipc_open) {
		(void)kms_nng_close_bounded(h->ipc, TEST_CLOSE_WAIT_MS);
		h->ipc_open = false;
	}
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		h->pid = 0;
	}
}

Kms__Response *harness_call_on(harness *h, nng_socket s, Kms__Request *req)
{
	char id[32];
	if (!req->request_id || !req->request_id[0]) {
		/* One count for every harness of the process: replicas share a
		 * store, whose request records key on (principal, id). */
		static atomic_uint seq;
		snprintf(id, sizeof id, "t-%u", atomic_fetch_add(&seq, 1) + 1);
		req->request_id = id;
	}
	if (req->schema_version == 0)
		req->schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	Kms__Credential cred;
	uint8_t mac[KMS_SIGN_MAC_LEN];
	bool signed_here = h->access_key_id[0] && !req->credential && req->op_case &&
	                   harness_sign(h, req, (int64_t)time(NULL), &cred, mac);
	size_t n = kms__request__get_packed_size(req);
	uint8_t *buf = malloc(n ? n : 1);
	kms__request__pack(req, buf);
	int rv = nng_send(s, buf, n, 0);
	free(buf);
	Kms__Response *resp = NULL;
	if (rv == 0) {
		void *reply = NULL;
		size_t len = 0;
		if (nng_recv(s, &reply, &len, NNG_FLAG_ALLOC) == 0) {
			resp = kms__response__unpack(NULL, len, reply);
			nng_free(reply, len);
		}
	}
	if (signed_here)
		req->credential = NULL;
	if (req->request_id == id)
		req->request_id = NULL;
	return resp;
}

Kms__Response *harness_call(harness *h, Kms__Request *req)
{
	if (!open_ipc(h, false))
		return NULL;
	return harness_call_on(h, h->ipc, req);
}

uint8_t *harness_raw(const char *url, const uint8_t *bytes, size_t n, int timeout_ms,
                     size_t *len)
{
	nng_socket s;
	uint8_t *out = NULL;
	*len = 0;
	if (nng_req0_open(&s) != 0)
		return NULL;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 64u << 20);
	if (nng_dial(s, url, NULL, 0) == 0 && nng_send(s, (void *)(uintptr_t)bytes, n, 0) == 0) {
		void *reply = NULL;
		if (nng_recv(s, &reply, len, NNG_FLAG_ALLOC) == 0) {
			out = malloc(*len ? *len : 1);
			memcpy(out, reply, *len);
			nng_free(reply, *len);
		}
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return out;
}

bool harness_tls_socket(harness *h, bool with_client_cert, nng_socket *out)
{
	return harness_tls_dial(h, h->tls_url, with_client_cert, out);
}

bool harness_tls_dial(harness *h, const char *url, bool with_client_cert, nng_socket *out)
{
	nng_tls_config *cfg = NULL;
	nng_dialer d;
	char path[700], key[700];
	if (nng_req0_open(out) != 0)
		return false;
	nng_socket_set_ms(*out, NNG_OPT_RECVTIMEO, CALL_TIMEOUT_MS * harness_time_scale());
	nng_socket_set_ms(*out, NNG_OPT_SENDTIMEO, CALL_TIMEOUT_MS * harness_time_scale());
	nng_socket_set_size(*out, NNG_OPT_RECVMAXSZ, 64u << 20);
	if (nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT) != 0)
		return false;
	snprintf(path, sizeof path, "%s/tls/ca.crt", h->dir);
	nng_tls_config_ca_file(cfg, path);
	nng_tls_config_server_name(cfg, "localhost");
	nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
	if (with_client_cert) {
		snprintf(path, sizeof path, "%s/tls/client.crt", h->dir);
		snprintf(key, sizeof key, "%s/tls/client.key", h->dir);
		char *cert_pem = harness_read_file(path, NULL);
		char *key_pem = harness_read_file(key, NULL);
		int rv = cert_pem && key_pem ? nng_tls_config_own_cert(cfg, cert_pem, key_pem, NULL) : -1;
		free(cert_pem);
		free(key_pem);
		if (rv != 0)
			return false;
	}
	bool ok = nng_dialer_create(&d, *out, url) == 0 &&
	          nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg) == 0 &&
	          nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0;
	nng_tls_config_free(cfg);
	return ok;
}

bool harness_create_key(harness *h, const char *alias, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "test key";
	if (alias)
		ck.alias = (char *)(uintptr_t)alias;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *resp = harness_call(h, &req);
	bool ok = resp && resp->status == KMS__STATUS__OK &&
	          resp->result_case == KMS__RESPONSE__RESULT_CREATE_KEY;
	if (ok)
		snprintf(out, 35, "%s", resp->create_key->key_metadata->key_id);
	else
		fprintf(stderr, "harness: create_key: %s\n", resp ? resp->message : "no answer");
	if (resp)
		kms__response__free_unpacked(resp, NULL);
	return ok;
}

char *harness_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	fclose(f);
	buf[got] = '\0';
	if (len)
		*len = got;
	return buf;
}

bool harness_log_contains(const harness *h, const char *needle)
{
	char *log = harness_read_file(h->log, NULL);
	bool found = log && strstr(log, needle);
	free(log);
	return found;
}
