#include "kms/config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kms/limits.h>

#include "common/error.h"
#include "kms/authz/authz_rate.h"
#include "kms/authz/authz_replay.h"
#include "kms/keys/keyring.h"
#include "kms/transport/http_parse.h"

#define DEFAULT_GCM_MAX_ENCRYPTIONS ((1ull << 32) - (1ull << 24))
#define DEFAULT_GCM_RESERVE_BLOCK 65536u

/* Parsing state: the first error wins and stops the parse. */
struct config_parse {
	kmsd_config *cfg;
	const char *path;
	kms_status status;
	char why[KMS_ERROR_MAX]; /* the first error: "[section] key: reason" */
};

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if (is_control((unsigned char)*s))
			return true;
	return false;
}

/* A section or key name for the error line: a control character, which
 * would break the line or reach a terminal, shown as '?'. */
static void clean_name(char *out, size_t cap, const char *name)
{
	size_t n = 0;
	for (; name[n] && n + 1 < cap; n++)
		out[n] = is_control((unsigned char)name[n]) ? '?' : name[n];
	out[n] = '\0';
}

static int parse_fail(struct config_parse *p, const char *section, const char *key,
                      const char *why)
{
	char s[41], k[61];
	clean_name(s, sizeof s, section);
	clean_name(k, sizeof k, key);
	p->status = KMS_INVALID_ARGUMENT;
	snprintf(p->why, sizeof p->why, "[%s] %s: %s", s, k, why);
	return 0;
}

static bool parse_u64(const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	if (value[0] == '\0' || value[0] == '-')
		return false;
	unsigned long long v = strtoull(value, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *value, bool *out)
{
	if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1")) {
		*out = true;
		return true;
	}
	if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0")) {
		*out = false;
		return true;
	}
	return false;
}

static bool copy_str(char *dst, size_t cap, const char *value)
{
	size_t n = strlen(value);
	if (n == 0 || n >= cap)
		return false;
	memcpy(dst, value, n + 1);
	return true;
}

static bool region_ok(const char *region)
{
	size_t n = strlen(region);
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = region[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static int on_kmsd(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t n;
	if (!strcmp(key, "region")) {
		if (!copy_str(cfg->region, sizeof cfg->region, value) || !region_ok(value))
			return parse_fail(p, "kmsd", key, "1 to 32 of [a-z0-9-], e.g. in-mum");
	} else if (!strcmp(key, "data_dir")) {
		if (!copy_str(cfg->data_dir, sizeof cfg->data_dir, value))
			return parse_fail(p, "kmsd", key, "a directory path");
	} else if (!strcmp(key, "workers")) {
		if (!parse_u64(value, 1, 256, &n))
			return parse_fail(p, "kmsd", key, "a number from 1 to 256");
		cfg->workers = (unsigned)n;
	} else {
		return parse_fail(p, "kmsd", key, "unknown key");
	}
	return 1;
}

/* A group by name, or by number if no group has that name. */
static bool parse_group(const char *value, gid_t *out)
{
	struct group *g = getgrnam(value);
	uint64_t n;
	if (!g && parse_u64(value, 0, UINT32_MAX - 1, &n))
		g = getgrgid((gid_t)n);
	if (!g)
		return false;
	*out = g->gr_gid;
	return true;
}

static int on_listen(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t n;
	if (!strcmp(key, "url")) {
		if (cfg->n_listen == KMSD_MAX_LISTEN)
			return parse_fail(p, "listen", key, "too many listen URLs (at most 8)");
		if (strncmp(value, "ipc://", 6) && strncmp(value, "tls+tcp://", 10) &&
		    strncmp(value, "tcp://", 6))
			return parse_fail(p, "listen", key,
			                  "use ipc:// or tls+tcp:// (tcp:// only with insecure_dev)");
		if (!copy_str(cfg->listen[cfg->n_listen], KMSD_PATH_MAX, value))
			return parse_fail(p, "listen", key, "URL too long");
		cfg->n_listen++;
	} else if (!strcmp(key, "insecure_dev")) {
		if (!parse_bool(value, &cfg->insecure_dev))
			return parse_fail(p, "listen", key, "true or false");
	} else if (!strcmp(key, "ipc_group")) {
		if (!parse_group(value, &cfg->ipc_gid))
			return parse_fail(p, "listen", key, "a group name or number that exists");
		cfg->ipc_gid_set = true;
	} else if (!strcmp(key, "ipc_max_connections")) {
		if (!parse_u64(value, 1, 65536, &n))
			return parse_fail(p, "listen", key, "1 to 65536");
		cfg->ipc_max_connections = (unsigned)n;
	} else if (!strcmp(key, "ipc_max_connections_per_uid")) {
		if (!parse_u64(value, 1, 65536, &n))
			return parse_fail(p, "listen", key, "1 to 65536");
		cfg->ipc_max_connections_per_uid = (unsigned)n;
	} else if (!strcmp(key, "ipc_read_timeout_ms")) {
		if (!parse_u64(value, 100, 60000, &n))
			return parse_fail(p, "listen", key, "100 to 60000");
		cfg->ipc_read_timeout_ms = (unsigned)n;
	} else {
		return parse_fail(p, "listen", key, "unknown key");
	}
	return 1;
}

static int on_tls(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	char *dst;
	size_t cap = KMSD_PATH_MAX;
	if (!strcmp(key, "cert_file"))
		dst = cfg->tls_cert_file;
	else if (!strcmp(key, "key_file"))
		dst = cfg->tls_key_file;
	else if (!strcmp(key, "client_ca_file"))
		dst = cfg->tls_client_ca_file;
	else
		return parse_fail(p, "tls", key, "unknown key");
	if (!copy_str(dst, cap, value))
		return parse_fail(p, "tls", key, "a file path");
	return 1;
}

/* One part of a pin, blanks around it trimmed, into out (1..cap-1 chars). */
static bool pin_part(const char *from, const char *to, char *out, size_t cap)
{
	while (from < to && *from == ' ')
		from++;
	while (to > from && to[-1] == ' ')
		to--;
	size_t n = (size_t)(to - from);
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, from, n);
	out[n] = '\0';
	return true;
}

/* "MANUFACTURER|MODEL|SERIAL". */
static bool parse_pin(const char *value, kmsd_hsm_pin *out)
{
	const char *a = strchr(value, '|');
	const char *b = a ? strchr(a + 1, '|') : NULL;
	if (!a || !b || strchr(b + 1, '|'))
		return false;
	return pin_part(value, a, out->manufacturer, sizeof out->manufacturer) &&
	       pin_part(a + 1, b, out->model, sizeof out->model) &&
	       pin_part(b + 1, b + strlen(b), out->serial, sizeof out->serial);
}

static int on_hsm(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	if (!strcmp(key, "module")) {
		if (!copy_str(cfg->hsm_module, sizeof cfg->hsm_module, value))
			return parse_fail(p, "hsm", key, "a file path");
	} else if (!strcmp(key, "token_label")) {
		if (!copy_str(cfg->hsm_token_label, sizeof cfg->hsm_token_label, value))
			return parse_fail(p, "hsm", key, "1 to 32 characters");
	} else if (!strcmp(key, "pin_file")) {
		if (!copy_str(cfg->hsm_pin_file, sizeof cfg->hsm_pin_file, value))
			return parse_fail(p, "hsm", key, "a file path");
	} else if (!strcmp(key, "pin_env")) {
		if (!copy_str(cfg->hsm_pin_env, sizeof cfg->hsm_pin_env, value))
			return parse_fail(p, "hsm", key, "an environment variable name");
	} else if (!strcmp(key, "pinned")) {
		if (cfg->n_hsm_pins == KMSD_HSM_PINS_MAX)
			return parse_fail(p, "hsm", key, "at most 8 pinned tokens");
		if (!parse_pin(value, &cfg->hsm_pins[cfg->n_hsm_pins]))
			return parse_fail(p, "hsm", key,
			                  "MANUFACTURER|MODEL|SERIAL as the token reports them "
			                  "(kms-admin hsm status): 1..32, 1..16 and 1..16 characters");
		cfg->n_hsm_pins++;
	} else {
		return parse_fail(p, "hsm", key, "unknown key (the PIN never goes in this file)");
	}
	return 1;
}

static int on_limits(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t n;
	if (!strcmp(key, "max_request_bytes")) {
		if (!parse_u64(value, 1024, 64u << 20, &n))
			return parse_fail(p, "limits", key, "1024 to 67108864");
		cfg->max_request_bytes = (size_t)n;
	} else if (!strcmp(key, "reply_send_timeout_ms")) {
		if (!parse_u64(value, 100, 60000, &n))
			return parse_fail(p, "limits", key, "100 to 60000");
		cfg->reply_send_timeout_ms = (unsigned)n;
	} else if (!strcmp(key, "queue_deadline_ms")) {
		if (!parse_u64(value, 10, 600000, &n))
			return parse_fail(p, "limits", key, "10 to 600000");
		cfg->queue_deadline_ms = (unsigned)n;
	} else if (!strcmp(key, "replay_entries")) {
		if (!parse_u64(value, 1024, AUTHZ_REPLAY_ENTRIES_MAX, &n))
			return parse_fail(p, "limits", key, "1024 to 16777216");
		cfg->replay_entries = (uint32_t)n;
	} else if (!strcmp(key, "replay_per_key")) {
		if (!parse_u64(value, 1, AUTHZ_REPLAY_ENTRIES_MAX, &n))
			return parse_fail(p, "limits", key, "1 to 16777216, at most replay_entries");
		cfg->replay_per_key = (uint32_t)n;
	} else if (!strcmp(key, "replay_access_keys")) {
		if (!parse_u64(value, 1, AUTHZ_REPLAY_ENTRIES_MAX, &n))
			return parse_fail(p, "limits", key, "1 to 16777216, at most replay_entries");
		cfg->replay_access_keys = (uint32_t)n;
	} else if (!strcmp(key, "max_tls_connections")) {
		if (!parse_u64(value, 1, 65536, &n))
			return parse_fail(p, "limits", key, "1 to 65536");
		cfg->max_tls_connections = (unsigned)n;
	} else if (!strcmp(key, "max_locked_bytes")) {
		if (!parse_u64(value, 1u << 20, 64ull << 30, &n))
			return parse_fail(p, "limits", key, "1048576 to 68719476736");
		cfg->max_locked_bytes = (size_t)n;
	} else if (!strcmp(key, "gcm_max_encryptions")) {
		if (!parse_u64(value, 1, 1ull << 32, &n))
			return parse_fail(p, "limits", key, "1 to 4294967296 (NIST SP 800-38D)");
		cfg->gcm_max_encryptions = n;
	} else if (!strcmp(key, "gcm_reserve_block")) {
		if (!parse_u64(value, 1, 1u << 24, &n))
			return parse_fail(p, "limits", key, "1 to 16777216");
		cfg->gcm_reserve_block = (uint32_t)n;
	} else if (!strcmp(key, "tick_seconds")) {
		if (!parse_u64(value, 1, 3600, &n))
			return parse_fail(p, "limits", key, "1 to 3600");
		cfg->tick_seconds = (unsigned)n;
	} else if (!strcmp(key, "principal_rate") || !strcmp(key, "principal_burst") ||
	           !strcmp(key, "key_rate") || !strcmp(key, "key_burst")) {
		if (!parse_u64(value, 0, AUTHZ_RATE_MAX, &n))
			return parse_fail(p, "limits", key, "0 (off) to 1000000");
		uint32_t *slot = !strcmp(key, "principal_rate")    ? &cfg->principal_rate
		                 : !strcmp(key, "principal_burst") ? &cfg->principal_burst
		                 : !strcmp(key, "key_rate")        ? &cfg->key_rate
		                                                   : &cfg->key_burst;
		*slot = (uint32_t)n;
	} else if (!strcmp(key, "seconds_per_day")) {
		if (!parse_u64(value, 1, 86400, &n))
			return parse_fail(p, "limits", key, "1 to 86400 (shorter only for tests)");
#ifndef KMS_TEST_SETTINGS
		if (n != 86400)
			return parse_fail(p, "limits", key, "a setting for tests only: this kmsd was "
			                  "built without KMS_TEST_SETTINGS; remove the line");
#endif
		cfg->seconds_per_day = (uint32_t)n;
	} else if (!strcmp(key, "retention_clock_file")) {
#ifndef KMS_TEST_SETTINGS
		return parse_fail(p, "limits", key, "a setting for tests only: this kmsd was "
		                  "built without KMS_TEST_SETTINGS; remove the line");
#endif
		if (!value[0] || strlen(value) >= sizeof cfg->retention_clock_file)
			return parse_fail(p, "limits", key, "a file path of 1 to 511 bytes");
		snprintf(cfg->retention_clock_file, sizeof cfg->retention_clock_file, "%s", value);
	} else {
		return parse_fail(p, "limits", key, "unknown key");
	}
	return 1;
}

static bool origin_ok(const char *origin)
{
	size_t n = strlen(origin);
	if (n < 1 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)origin[i];
		if (c <= 0x20 || c >= 0x7f || c == '+')
			return false; /* a signed-note key name: no space, no '+' */
	}
	return true;
}

static int on_audit(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t n;
	if (!strcmp(key, "origin")) {
		if (!copy_str(cfg->audit_origin, sizeof cfg->audit_origin, value) || !origin_ok(value))
			return parse_fail(p, "audit", key,
			                  "1 to 128 printable characters, no spaces or '+', "
			                  "e.g. kms.example.in/audit/in-mum");
	} else if (!strcmp(key, "checkpoint_ms")) {
		if (!parse_u64(value, 10, 1000, &n))
			return parse_fail(p, "audit", key, "10 to 1000 (at least once a second)");
		cfg->audit_checkpoint_ms = (unsigned)n;
	} else if (!strcmp(key, "sync")) {
		if (!parse_bool(value, &cfg->audit_sync))
			return parse_fail(p, "audit", key, "true or false (false only for benchmarks)");
	} else if (!strcmp(key, "http")) {
		if (strncmp(value, "http://", 7) || !copy_str(cfg->http_url, sizeof cfg->http_url, value))
			return parse_fail(p, "audit", key, "an http:// URL, e.g. http://127.0.0.1:7480");
	} else if (!strcmp(key, "http_public")) {
		if (!parse_bool(value, &cfg->http_public))
			return parse_fail(p, "audit", key, "true or false");
	} else if (!strcmp(key, "http_max_connections")) {
		if (!parse_u64(value, 1, KMSD_HTTP_CONNECTIONS_MAX, &n))
			return parse_fail(p, "audit", key, "1 to 1024");
		cfg->http_max_connections = (unsigned)n;
	} else if (!strcmp(key, "http_timeout_ms")) {
		if (!parse_u64(value, 100, 60000, &n))
			return parse_fail(p, "audit", key, "100 to 60000");
		cfg->http_timeout_ms = (unsigned)n;
	} else if (!strcmp(key, "http_write_timeout_ms")) {
		if (!parse_u64(value, 100, 600000, &n))
			return parse_fail(p, "audit", key, "100 to 600000");
		cfg->http_write_timeout_ms = (unsigned)n;
	} else {
		return parse_fail(p, "audit", key, "unknown key");
	}
	return 1;
}

static int on_authz(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	if (!strcmp(key, "default_key_policy")) {
		if (!copy_str(cfg->authz_default_key_policy, sizeof cfg->authz_default_key_policy,
		              value))
			return parse_fail(p, "authz", key, "a path of 1 to 1023 characters");
	} else {
		return parse_fail(p, "authz", key, "unknown key");
	}
	return 1;
}

static int on_keys(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t n;
	if (!strcmp(key, "metadata_cache_entries")) {
		if (!parse_u64(value, 1, KEYRING_METADATA_CACHE_MAX, &n))
			return parse_fail(p, "keys", key, "1 to 10000000");
		cfg->metadata_cache_entries = (uint32_t)n;
	} else if (!strcmp(key, "cache_entries")) {
		if (!parse_u64(value, 1, KEYRING_UNWRAPPED_CACHE_MAX, &n))
			return parse_fail(p, "keys", key, "1 to 1000000");
		cfg->unwrapped_cache_entries = (uint32_t)n;
	} else if (!strcmp(key, "max_hsm_resident")) {
		if (!parse_u64(value, 1, KEYRING_MAX_HSM_RESIDENT_MAX, &n))
			return parse_fail(p, "keys", key, "1 to 100000");
		cfg->max_hsm_resident = (uint32_t)n;
	} else if (!strcmp(key, "rewrap_pages_per_tick")) {
		if (!parse_u64(value, 1, KEYRING_REWRAP_PAGES_MAX, &n))
			return parse_fail(p, "keys", key, "1 to 1024");
		cfg->rewrap_pages_per_tick = (uint32_t)n;
	} else {
		return parse_fail(p, "keys", key, "unknown key");
	}
	return 1;
}

static int on_ipc_principal(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	uint64_t uid;
	if (!parse_u64(key, 0, UINT32_MAX - 1, &uid))
		return parse_fail(p, "ipc_principals", key, "keys are numeric uids");
	if (cfg->n_ipc_principals == KMSD_MAX_IPC_PRINCIPALS)
		return parse_fail(p, "ipc_principals", key, "too many (at most 64)");
	kmsd_ipc_principal *ip = &cfg->ipc_principals[cfg->n_ipc_principals];
	if (!copy_str(ip->name, sizeof ip->name, value))
		return parse_fail(p, "ipc_principals", key, "a principal name of 1 to 63 characters");
	ip->uid = (uid_t)uid;
	cfg->n_ipc_principals++;
	return 1;
}

/* [store]: where the key store is (docs/scale-out.md). The URL's form is
 * checked when kmsd opens the store (kms/store/db_pg.c). */
static int on_store(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	if (!strcmp(key, "url")) {
		if (strncmp(value, "postgresql://", 13) && strncmp(value, "postgres://", 11))
			return parse_fail(p, "store", key, "a postgresql:// URL (without a password: "
			                  "see password_file)");
		if (!copy_str(cfg->store_url, sizeof cfg->store_url, value))
			return parse_fail(p, "store", key, "a URL of at most 1023 characters");
	} else if (!strcmp(key, "password_file")) {
		if (!copy_str(cfg->store_password_file, sizeof cfg->store_password_file, value))
			return parse_fail(p, "store", key, "a path of 1 to 1023 characters");
	} else {
		return parse_fail(p, "store", key, "unknown key");
	}
	return 1;
}

/* [process] user: a user by name (it must exist now). */
static int on_process(struct config_parse *p, const char *key, const char *value)
{
	kmsd_config *cfg = p->cfg;
	if (strcmp(key, "user"))
		return parse_fail(p, "process", key, "unknown key");
	struct passwd *pw = getpwnam(value);
	if (!pw)
		return parse_fail(p, "process", key, "a user name that exists");
	if (pw->pw_uid == 0)
		return parse_fail(p, "process", key, "a user other than root");
	if (!copy_str(cfg->run_user, sizeof cfg->run_user, value))
		return parse_fail(p, "process", key, "a user name of 1 to 63 characters");
	cfg->run_uid = pw->pw_uid;
	cfg->run_gid = pw->pw_gid;
	return 1;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
	struct config_parse *p = user;
	/* Values reach error lines and logs (paths, URLs): none may hold a
	 * control character. */
	if (has_control(value))
		return parse_fail(p, section, key, "a control character in the value: remove it");
	if (!strcmp(section, "kmsd"))
		return on_kmsd(p, key, value);
	if (!strcmp(section, "listen"))
		return on_listen(p, key, value);
	if (!strcmp(section, "tls"))
		return on_tls(p, key, value);
	if (!strcmp(section, "hsm"))
		return on_hsm(p, key, value);
	if (!strcmp(section, "limits"))
		return on_limits(p, key, value);
	if (!strcmp(section, "audit"))
		return on_audit(p, key, value);
	if (!strcmp(section, "ipc_principals"))
		return on_ipc_principal(p, key, value);
	if (!strcmp(section, "authz"))
		return on_authz(p, key, value);
	if (!strcmp(section, "keys"))
		return on_keys(p, key, value);
	if (!strcmp(section, "process"))
		return on_process(p, key, value);
	if (!strcmp(section, "store"))
		return on_store(p, key, value);
	return parse_fail(p, section, key, "unknown section");
}

static kms_status check_readable(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config: %s %s: %s", what, path,
		                strerror(errno));
	fclose(f);
	return KMS_OK;
}

/* The HTTP endpoint answers anyone who can reach it: loopback unless the
 * operator says otherwise in so many words. */
static kms_status check_http(const char *path, const kmsd_config *cfg)
{
	if (!cfg->http_url[0])
		return KMS_OK;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool loopback = false;
	if (http_listen_parse(cfg->http_url, &addr, &addr_len, &loopback) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [audit] %s", path,
		                kms_error_message());
	if (!loopback && !cfg->http_public)
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "config %s: [audit] http = %s is not a loopback address: publish the "
		                "tiles through a web server (docs/audit-log.md), or set [audit] "
		                "http_public = true", path, cfg->http_url);
	return KMS_OK;
}

/* A secret's file (the HSM PIN, the TLS private key): no access for group
 * or others, so that no other local user can read it. */
static kms_status check_private(const char *path, const char *what)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config: %s %s: %s", what, path,
		                strerror(errno));
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config: %s %s has permissions %03o: chmod "
		                "600 it", what, path, (unsigned)(st.st_mode & 0777));
	return KMS_OK;
}

static kms_status check_whole(const char *path, kmsd_config *cfg)
{
	if (cfg->data_dir[0] == '\0')
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [kmsd] data_dir is required", path);
	if (cfg->n_listen == 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [listen] needs at least one url", path);
	if (cfg->hsm_token_label[0] == '\0')
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [hsm] token_label is required", path);
	if (cfg->hsm_pin_file[0] == '\0' && cfg->hsm_pin_env[0] == '\0')
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "config %s: [hsm] needs pin_file or pin_env (never the PIN itself)", path);
	if (cfg->authz_default_key_policy[0]) {
		/* Read and compiled at start (authz_enforce_open); here only that
		 * it is there and not larger than a policy may be. */
		struct stat ps;
		KMS_GUARD(check_readable(cfg->authz_default_key_policy, "[authz] default_key_policy"));
		if (stat(cfg->authz_default_key_policy, &ps) != 0 || !S_ISREG(ps.st_mode) ||
		    ps.st_size < 1 || ps.st_size > (off_t)KMS_POLICY_MAX)
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [authz] default_key_policy "
			                "%s is not a file of 1 to %u bytes", path,
			                cfg->authz_default_key_policy, KMS_POLICY_MAX);
	}
	if (cfg->hsm_pin_file[0]) {
		KMS_GUARD(check_private(cfg->hsm_pin_file, "PIN file"));
		KMS_GUARD(check_readable(cfg->hsm_pin_file, "PIN file"));
	}
	if (cfg->store_password_file[0] && !cfg->store_url[0])
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [store] password_file without url: "
		                "give the database's url too, or remove [store] for SQLite", path);
	if (cfg->store_password_file[0]) {
		KMS_GUARD(check_private(cfg->store_password_file, "[store] password_file"));
		KMS_GUARD(check_readable(cfg->store_password_file, "[store] password_file"));
	}
	bool want_tls = false;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		if (!strncmp(cfg->listen[i], "tls+tcp://", 10))
			want_tls = true;
		if (!strncmp(cfg->listen[i], "tcp://", 6) && !cfg->insecure_dev)
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "config %s: %s is plain tcp: use tls+tcp://, or set "
			                "[listen] insecure_dev = true for development only",
			                path, cfg->listen[i]);
	}
	if (want_tls) {
		if (!cfg->tls_cert_file[0] || !cfg->tls_key_file[0])
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "config %s: tls+tcp:// needs [tls] cert_file and key_file", path);
		KMS_GUARD(check_readable(cfg->tls_cert_file, "TLS certificate"));
		KMS_GUARD(check_readable(cfg->tls_key_file, "TLS key"));
		KMS_GUARD(check_private(cfg->tls_key_file, "TLS key file"));
		/* Until signed requests land, the client certificate is the only
		 * gate on a network listener: it is required. */
		if (!cfg->tls_client_ca_file[0])
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "config %s: tls+tcp:// needs [tls] client_ca_file: clients must "
			                "present certificates", path);
		KMS_GUARD(check_readable(cfg->tls_client_ca_file, "TLS client CA"));
	}
	KMS_GUARD(check_http(path, cfg));
	/* kmsd creates its ipc sockets as that user: by default in its group. */
	if (cfg->run_user[0] && !cfg->ipc_gid_set)
		cfg->ipc_gid = cfg->run_gid;
	if (!cfg->max_locked_bytes)
		cfg->max_locked_bytes = KMSD_LOCKED_DEFAULT(cfg->workers, cfg->max_request_bytes);
	if (!cfg->audit_origin[0])
		snprintf(cfg->audit_origin, sizeof cfg->audit_origin, "kms.local/audit/%s", cfg->region);
	/* Unset: a quarter of the entries per key, and up to 4096 keys. */
	if (!cfg->replay_per_key)
		cfg->replay_per_key = cfg->replay_entries / 4;
	if (!cfg->replay_access_keys)
		cfg->replay_access_keys = cfg->replay_entries < AUTHZ_REPLAY_KEYS_DEFAULT
		                                  ? cfg->replay_entries : AUTHZ_REPLAY_KEYS_DEFAULT;
	if (cfg->replay_per_key > cfg->replay_entries ||
	    cfg->replay_access_keys > cfg->replay_entries)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: [limits] replay_per_key (%u) and "
		                "replay_access_keys (%u) must each be at most replay_entries (%u)",
		                path, cfg->replay_per_key, cfg->replay_access_keys,
		                cfg->replay_entries);
	if (cfg->gcm_reserve_block > cfg->gcm_max_encryptions)
		cfg->gcm_reserve_block = (uint32_t)cfg->gcm_max_encryptions;
	return KMS_OK;
}

kms_status kmsd_config_load(const char *path, kmsd_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	strcpy(cfg->region, "in-mum");
	cfg->workers = 4;
	cfg->max_request_bytes = KMS_REQUEST_MAX_DEFAULT;
	cfg->reply_send_timeout_ms = 5000;
	cfg->queue_deadline_ms = 5000;
	cfg->max_tls_connections = 256;
	cfg->replay_entries = AUTHZ_REPLAY_ENTRIES_DEFAULT;
	cfg->ipc_gid = getegid();
	cfg->ipc_max_connections = 256;
	cfg->ipc_max_connections_per_uid = 32;
	cfg->ipc_read_timeout_ms = 5000;
	cfg->gcm_max_encryptions = DEFAULT_GCM_MAX_ENCRYPTIONS;
	cfg->gcm_reserve_block = DEFAULT_GCM_RESERVE_BLOCK;
	cfg->tick_seconds = 10;
	cfg->metadata_cache_entries = KEYRING_METADATA_CACHE_DEFAULT;
	cfg->unwrapped_cache_entries = KEYRING_UNWRAPPED_CACHE_DEFAULT;
	cfg->max_hsm_resident = KEYRING_MAX_HSM_RESIDENT_DEFAULT;
	cfg->rewrap_pages_per_tick = KEYRING_REWRAP_PAGES;
	cfg->seconds_per_day = 86400;
	cfg->audit_checkpoint_ms = 1000;
	cfg->audit_sync = true;
	cfg->http_max_connections = 64;
	cfg->http_timeout_ms = 5000;
	cfg->http_write_timeout_ms = 30000;

	FILE *f = fopen(path, "r");
	if (!f)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: %s", path, strerror(errno));
	struct config_parse p = { .cfg = cfg, .path = path, .status = KMS_OK };
	int line = ini_parse_file(f, on_entry, &p);
	fclose(f);
	if (p.status != KMS_OK)
		return KMS_FAIL(p.status, "config %s: line %d: %s", path, line, p.why);
	if (line != 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config %s: line %d: not INI syntax", path, line);
	return check_whole(path, cfg);
}

const char *kmsd_config_ipc_principal(const kmsd_config *cfg, uid_t uid)
{
	for (size_t i = 0; i < cfg->n_ipc_principals; i++)
		if (cfg->ipc_principals[i].uid == uid)
			return cfg->ipc_principals[i].name;
	return NULL;
}
