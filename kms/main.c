/*
 * kmsd: the key-management daemon. `kmsd -c FILE` runs in the foreground
 * (for systemd), logs to stderr, and on SIGTERM or SIGINT drains the requests
 * in flight and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/nng_close.h"
#include "kms/config.h"
#include "common/error.h"
#include "common/secmem_cap.h"
#include "hsm/hsm.h"
#include "kms/keys/keyring.h"
#include "kms/kmsd.h"
#include "kms/kmsd_bootstrap.h"
#include "kms/kmsd_store.h"
#include "kms/kmsd_check.h"
#include "kms/kmsd_notify.h"
#include "kms/kmsd_privs.h"
#include "kms/kmsd_residency.h"
#include "kms/ops/op_dp.h"
#include "kms/authz/authz_keys.h"
#include "kms/authz/authz_secrets.h"
#include "kms/authz/authz_verify.h"
#include <kms/secmem.h>

#include "kms/audit/audit.h"
#include "kms/authz/authz_enforce.h"
#include "kms/pipeline/refusals.h"
#include "kms/transport/http.h"
#include "kms/transport/server.h"

/* How long the last step of a shutdown may wait for NNG to let go. */
#define NNG_FINI_WAIT_MS 5000u

/* No core dumps (they would hold keys and plaintexts), no ptrace by others,
 * and nothing kmsd could execute gains privileges (set before any thread,
 * so every thread has it). */
static void harden_process(void)
{
	struct rlimit none = { 0, 0 };
	if (setrlimit(RLIMIT_CORE, &none) != 0)
		kms_log("warn", "cannot disable core dumps: %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		kms_log("warn", "cannot mark the process undumpable: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		kms_log("warn", "cannot set no_new_privs: %s", strerror(errno));
	umask(077);
}

/* The data dir, made if missing (as [process] user once kmsd acts as it). */
static kms_status make_data_dir(const kmsd_config *cfg)
{
	if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "data_dir %s: %s", cfg->data_dir,
		                strerror(errno));
	return KMS_OK;
}

/* Raises the open-file limit to what the config needs: every connection
 * each listener may hold, and a reserve that no peer can take (the store,
 * the audit log, the HSM). Fails when the hard limit is lower. */
static kms_status raise_open_files(const kmsd_config *cfg)
{
	rlim_t need = KMSD_FD_RESERVE(cfg->workers) + cfg->http_max_connections;
	bool nng = false;
	for (size_t i = 0; i < cfg->n_listen; i++)
		nng |= strncmp(cfg->listen[i], "ipc://", 6) != 0;
	need += cfg->ipc_max_connections + cfg->n_listen;
	if (nng) /* NNG: its pipes, and its own few descriptors per listener */
		need += cfg->max_tls_connections + 16u * cfg->n_listen;
	struct rlimit now;
	if (getrlimit(RLIMIT_NOFILE, &now) != 0)
		return KMS_FAIL(KMS_INTERNAL, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	if (now.rlim_cur != RLIM_INFINITY && now.rlim_cur >= need)
		return KMS_OK;
	if (now.rlim_max != RLIM_INFINITY && now.rlim_max < need)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "the config needs %llu open files and the hard "
		                "limit is %llu: raise it (systemd: LimitNOFILE=) or lower [listen] "
		                "ipc_max_connections, [limits] max_tls_connections or [audit] "
		                "http_max_connections", (unsigned long long)need,
		                (unsigned long long)now.rlim_max);
	struct rlimit want = { need, now.rlim_max };
	if (setrlimit(RLIMIT_NOFILE, &want) != 0)
		return KMS_FAIL(KMS_INTERNAL, "cannot raise the open-file limit to %llu: %s",
		                (unsigned long long)need, strerror(errno));
	kms_log("info", "open-file limit raised to %llu (the config's connections and a "
	        "reserve of %u)", (unsigned long long)need, KMSD_FD_RESERVE(cfg->workers));
	return KMS_OK;
}

/* The signed-request checks: access keys from the store, the verifier. */
static kms_status open_authz(kmsd *d)
{
	bool created = false; /* authz_secrets_key_ensure logs it */
	KMS_GUARD(authz_secrets_key_ensure(d->hsm, &created));
	KMS_GUARD(authz_keys_open(keyring_store(d->keyring), d->hsm, &d->authz_keys));
	authz_verify_config vc = {
		.keys = authz_keys_source(d->authz_keys),
		.replay_entries = d->cfg.replay_entries,
		.replay_per_key = d->cfg.replay_per_key,
		.replay_keys = d->cfg.replay_access_keys,
	};
	return authz_verifier_open(&vc, &d->authz_verifier);
}

/* Debian 12's NNG 1.5.2 cannot say which certificate a TLS pipe presented,
 * so a principal's cert_name cannot be checked: said once, at start. */
static void log_cn_binding(const kmsd_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (!strncmp(cfg->listen[i], "tls+tcp://", 10)) {
			kms_log("warn", "tls+tcp:// listener: the client certificate's CN is not bound "
			        "to the principal (a principal's cert_name is not enforced): this "
			        "NNG cannot report which certificate a connection presented, so the "
			        "certificate only admits the peer and each request's signature names "
			        "the principal");
			return;
		}
}

/* The background check of log.bin found damage (the audit module logged
 * it): stop as a SIGTERM would, and exit non-zero (main checks). */
static void stop_on_audit_damage(void *ctx)
{
	(void)ctx;
	kill(getpid(), SIGTERM);
}

static int usage(FILE *to)
{
	fprintf(to, "usage: kmsd -c CONFIG [--check]\n"
	            "       kmsd -c CONFIG --bootstrap-admin NAME --credentials-out FILE "
	            "[--roles admin,app,auditor]\n"
	            "  -c CONFIG  the INI config file (see docs/config.md)\n"
	            "  --check    validate the config, log in to the HSM, look at the data dir\n"
	            "             and exit; changes nothing, so it may run beside a live kmsd\n"
	            "  --bootstrap-admin NAME  on a fresh data dir (no principal yet, kmsd not\n"
	            "             running): create principal NAME (roles: --roles, default admin)\n"
	            "             and one access key, write its credentials to FILE (mode 0600)\n"
	            "             and exit\n"
	            "  --version  print kmsd's version and exit\n");
	return to == stderr ? 2 : 0;
}

/* The background task: deletion windows, automatic rotation, the KEK
 * re-wrap job and data principals' retention. */
typedef struct ticker {
	kmsd *d;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
} ticker;

/* The retention tick's clock: the real one, or (tests only) the time a
 * test wrote to [limits] retention_clock_file. */
static int64_t retention_now(const kmsd *d)
{
#ifdef KMS_TEST_SETTINGS
	if (d->cfg.retention_clock_file[0]) {
		FILE *f = fopen(d->cfg.retention_clock_file, "r");
		long long t = 0;
		bool ok = f && fscanf(f, "%lld", &t) == 1 && t > 0;
		if (f)
			fclose(f);
		if (ok)
			return (int64_t)t;
	}
#else
	(void)d;
#endif
	return kms_now();
}

static void *ticker_main(void *arg)
{
	ticker *t = arg;
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		pthread_mutex_unlock(&t->lock);
		if (keyring_tick(t->d->keyring, kms_now(), NULL) != KMS_OK)
			kms_log("error", "background task: %s (%s)", kms_error_message(), kms_error_where());
		if (kmsd_retention_tick(t->d, retention_now(t->d)) != KMS_OK)
			kms_log("error", "retention: %s (%s)", kms_error_message(), kms_error_where());
		pthread_mutex_lock(&t->lock);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += t->d->cfg.tick_seconds;
		while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Tests only: KMS_TEST_HOLD_BEFORE_SERVING names a FIFO; with the
 * listeners bound and before the drop to [process] user, kmsd waits until
 * a writer opens it and closes it (test_privilege_drop looks at the
 * process in between). */
static void test_hold_before_serving(void)
{
#ifdef KMS_TEST_SETTINGS
	const char *fifo = getenv("KMS_TEST_HOLD_BEFORE_SERVING");
	if (!fifo || !fifo[0])
		return;
	kms_log("warn", "test hook: KMS_TEST_HOLD_BEFORE_SERVING: holding before serving until "
	        "%s is written and closed", fifo);
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	char buf[64];
	if (fd >= 0) {
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
	}
#endif
}

static kms_status open_keyring(kmsd *d)
{
	const kmsd_config *cfg = &d->cfg;
	keyring_config kc = {
		.region = cfg->region,
		.gcm_max_encryptions = cfg->gcm_max_encryptions,
		.reserve_block = cfg->gcm_reserve_block,
		.seconds_per_day = cfg->seconds_per_day,
		.metadata_cache_entries = cfg->metadata_cache_entries,
		.unwrapped_cache_entries = cfg->unwrapped_cache_entries,
		.max_hsm_resident = cfg->max_hsm_resident,
		.rewrap_pages_per_tick = cfg->rewrap_pages_per_tick,
	};
	store_options so = kmsd_store_options(cfg, d->store_password);
	kc.store = &so;
	if (cfg->store_url[0])
		kms_log("info", "store: PostgreSQL at %s", cfg->store_url);
	return keyring_open(d->hsm, cfg->data_dir, &kc, &d->keyring);
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	bool check_only = false;
	const char *bootstrap_name = NULL, *credentials_out = NULL, *roles_text = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			config_path = argv[++i];
		else if (!strcmp(argv[i], "--check"))
			check_only = true;
		else if (!strcmp(argv[i], "--bootstrap-admin") && i + 1 < argc)
			bootstrap_name = argv[++i];
		else if (!strcmp(argv[i], "--credentials-out") && i + 1 < argc)
			credentials_out = argv[++i];
		else if (!strcmp(argv[i], "--roles") && i + 1 < argc)
			roles_text = argv[++i];
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return usage(stdout);
		else if (!strcmp(argv[i], "--version"))
			return printf("kmsd %s\n", KMSD_VERSION) < 0 || fflush(stdout) != 0;
		else
			return usage(stderr);
	}
	if (!config_path)
		return usage(stderr);
	if ((credentials_out || roles_text) && !bootstrap_name)
		return usage(stderr);
	if (bootstrap_name && (!credentials_out || check_only)) {
		fprintf(stderr, "kmsd: --bootstrap-admin needs --credentials-out FILE (and not "
		        "--check)\n");
		return 2;
	}
	uint32_t bootstrap_roles = PRINCIPAL_ROLE_ADMIN;
	if (roles_text && kmsd_bootstrap_roles(roles_text, &bootstrap_roles) != KMS_OK) {
		fprintf(stderr, "kmsd: %s\n", kms_error_message());
		return 2;
	}

	harden_process();
	/* Signals are taken by sigwait in this thread only. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	static kmsd d;
	int exit_code = 1;
	server *srv = NULL;
	http_server *web = NULL;
	ticker t = { .d = &d, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };
	bool ticking = false;
	kmsd_notify *notify = NULL;

	if (kmsd_config_load(config_path, &d.cfg) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		return 1;
	}
	if (d.cfg.seconds_per_day != 86400)
		kms_log("warn", "TEST SETTING: [limits] seconds_per_day = %u: a day lasts %u s, so "
		        "deletion windows and rotation periods pass %u times too fast; never run "
		        "this outside tests", d.cfg.seconds_per_day, d.cfg.seconds_per_day,
		        86400u / d.cfg.seconds_per_day);
	if (d.cfg.retention_clock_file[0])
		kms_log("warn", "TEST SETTING: [limits] retention_clock_file: retention's clock is "
		        "whatever that file says; never run this outside tests");
	/* Root with [process] user: kmsd_privs.h's steps, in this order. */
	bool dropping = kmsd_privs_dropping(&d.cfg);
	if (kmsd_privs_check(&d.cfg) != KMS_OK || raise_open_files(&d.cfg) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		return 1;
	}
	if (dropping)
		kmsd_privs_raise_memlock(&d.cfg);
	/* Whatever CAP_IPC_LOCK lets root lock: secret memory stops here. */
	kms_secure_set_cap(d.cfg.max_locked_bytes);
	if (!check_only && !dropping && make_data_dir(&d.cfg) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		return 1;
	}
	hsm_config hc = {
		.module_path = d.cfg.hsm_module[0] ? d.cfg.hsm_module : NULL,
		.token_label = d.cfg.hsm_token_label,
		.pin_file = d.cfg.hsm_pin_file[0] ? d.cfg.hsm_pin_file : NULL,
		.pin_env = d.cfg.hsm_pin_env[0] ? d.cfg.hsm_pin_env : NULL,
	};
	kms_status opened = hsm_open(&hc, &d.hsm);
	if (hc.pin_env) {
		/* The HSM layer keeps its own locked copy: take the PIN out of the
		 * environment (and /proc/PID/environ) and away from any child. */
		char *value = getenv(hc.pin_env);
		if (value)
			kms_wipe(value, strlen(value));
		unsetenv(hc.pin_env);
	}
	if (opened != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	/* Before the drop to [process] user: the file may be root's alone. */
	if (kmsd_store_password_load(&d.cfg, &d.store_password) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (dropping && !check_only &&
	    (kmsd_privs_act_as(&d.cfg) != KMS_OK || make_data_dir(&d.cfg) != KMS_OK)) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (kmsd_residency_check(&d.cfg, d.hsm, &d.residency) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (check_only) {
		/* Read-only (kmsd_check.h): no keyring (its store open creates and
		 * migrates), no audit log (its open takes the lock and may create
		 * the signing key). */
		if (kmsd_check(&d.cfg, d.hsm) != KMS_OK) {
			kms_log("fatal", "%s", kms_error_message());
			goto out;
		}
		kms_log("info", "config %s is valid; HSM token \"%s\" opened", config_path,
		         d.cfg.hsm_token_label);
		exit_code = 0;
		goto out;
	}
	if (bootstrap_name) {
		char id[AUTHZ_ID_SIZE];
		store_options so = kmsd_store_options(&d.cfg, d.store_password);
		if (kmsd_bootstrap(&d.cfg, &so, d.hsm, bootstrap_name, bootstrap_roles,
		                   credentials_out, id) != KMS_OK) {
			kms_log("fatal", "%s", kms_error_message());
			goto out;
		}
		printf("principal %s\naccess_key_id %s\n", bootstrap_name, id);
		exit_code = fflush(stdout) != 0;
		goto out;
	}
	if (kmsd_residency_locate(&d.cfg, &d.residency) != KMS_OK ||
	    open_keyring(&d) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (open_authz(&d) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (authz_enforce_open(&d.cfg, keyring_store(d.keyring), &d.authz) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	char audit_dir[KMSD_PATH_MAX + 16];
	snprintf(audit_dir, sizeof audit_dir, "%s/audit", d.cfg.data_dir);
	audit_config ac = {
		.dir = audit_dir,
		.origin = d.cfg.audit_origin,
		.hsm = d.hsm,
		.checkpoint_ms = d.cfg.audit_checkpoint_ms,
		.sync = d.cfg.audit_sync,
		.on_damage = stop_on_audit_damage,
	};
	/* Replicas on one PostgreSQL store keep one log for the fleet. */
	if (store_is_pg(keyring_store(d.keyring)))
		ac.fleet = keyring_store(d.keyring);
	if (!d.cfg.audit_sync)
		kms_log("warn", "audit log without fdatasync ([audit] sync = false): entries can be "
		         "lost in a crash; for benchmarks only");
	if (audit_open(&ac, &d.audit) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	d.started_at = kms_now();
	if (refusals_open(&d, &d.refusals) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	/* Bound, not served: nothing reads a peer's bytes before the drop. */
	if (server_open(&d, &srv) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	d.transport = srv;
	log_cn_binding(&d.cfg);
	if (d.cfg.http_url[0]) {
		char public_dir[KMSD_PATH_MAX + 32];
		snprintf(public_dir, sizeof public_dir, "%s/public", audit_dir);
		http_config web_cfg = {
			.url = d.cfg.http_url,
			.public_dir = public_dir,
			.max_connections = d.cfg.http_max_connections,
			.read_timeout_ms = d.cfg.http_timeout_ms,
			.write_timeout_ms = d.cfg.http_write_timeout_ms,
		};
		if (d.cfg.http_public)
			kms_log("warn", "http on %s ([audit] http_public = true): /healthz, /metrics and "
			         "the tiles answer anyone who can reach it", d.cfg.http_url);
		if (http_open(&d, &web_cfg, &web) != KMS_OK) {
			kms_log("fatal", "%s", kms_error_message());
			goto out;
		}
	}
	test_hold_before_serving();
	if (dropping && kmsd_privs_drop(&d.cfg) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (server_serve(srv) != KMS_OK || (web && http_serve(web) != KMS_OK)) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}
	if (pthread_create(&t.thread, NULL, ticker_main, &t) != 0) {
		kms_log("fatal", "cannot start the background task thread");
		goto out;
	}
	ticking = true;
	if (kms_secure_lock_failures())
		kms_log("warn", "%zu blocks of secret memory could not be locked in RAM "
		         "(RLIMIT_MEMLOCK): secrets may reach swap; raise the limit "
		         "(systemd: LimitMEMLOCK=)", kms_secure_lock_failures());
	kmsd_privs_warn_root(&d.cfg);
	if (d.residency.pinned)
		kms_log("info", "residency: HSM token \"%s\" is pinned (%s|%s|%s)",
		         d.residency.token.label, d.residency.token.manufacturer,
		         d.residency.token.model, d.residency.token.serial);
	else
		kms_log("warn", "residency: no [hsm] pinned token: kmsd runs on any token "
		         "labelled \"%s\"; this one is %s|%s|%s (pin it: docs/config.md)",
		         d.residency.token.label, d.residency.token.manufacturer,
		         d.residency.token.model, d.residency.token.serial);
	kms_log("info", "ready: region %s, %u workers, token \"%s\", at most %zu bytes of "
	         "locked memory", d.cfg.region, d.cfg.workers, d.cfg.hsm_token_label,
	         d.cfg.max_locked_bytes);
	char status[128];
	snprintf(status, sizeof status, "ready: region %s, token \"%s\"", d.cfg.region,
	         d.cfg.hsm_token_label);
	if (kmsd_notify_ready(d.hsm, status, &notify) != KMS_OK) {
		kms_log("fatal", "%s", kms_error_message());
		goto out;
	}

	int sig = 0;
	sigwait(&sigs, &sig);
	audit_stats as;
	audit_get_stats(d.audit, &as);
	if (as.damaged) {
		kms_log("fatal", "audit: log.bin is damaged (above): stopping");
		kmsd_notify_stopping(notify, "stopping: the audit log is damaged");
	} else {
		kms_log("info", "%s: draining requests in flight",
		         sig == SIGTERM ? "SIGTERM" : "SIGINT");
		kmsd_notify_stopping(notify, "draining requests in flight");
		exit_code = 0;
	}
out:
	http_stop(web); /* first: /healthz probes the listeners */
	d.transport = NULL;
	server_drain_and_close(srv);
	if (ticking) {
		pthread_mutex_lock(&t.lock);
		t.stop = true;
		pthread_cond_signal(&t.wake);
		pthread_mutex_unlock(&t.lock);
		pthread_join(t.thread, NULL);
	}
	refusals_close(d.refusals); /* its counts are entries too */
	audit_close(d.audit); /* after the workers: their entries are written first */
	authz_verifier_close(d.authz_verifier); /* after the workers */
	authz_keys_close(d.authz_keys);
	authz_enforce_close(d.authz);
	keyring_close(d.keyring);
	kmsd_notify_close(notify); /* its watchdog probes the HSM: before hsm_close */
	hsm_close(d.hsm);
	kmsd_store_password_free(d.store_password);
	/* Last: lets NNG's reaper free what the closed sockets left it, so an
	 * exit does not race it (LeakSanitizer would call that a leak). */
	if (!kms_nng_fini_bounded(NNG_FINI_WAIT_MS))
		kms_log("warn", "NNG did not finish shutting down within %u ms; exiting anyway",
		         NNG_FINI_WAIT_MS);
	if (exit_code == 0 && !check_only && !bootstrap_name)
		kms_log("info", "stopped");
	return exit_code;
}
