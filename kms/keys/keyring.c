/*
 * keyring.c: opening and closing the keyring, its configuration, the test
 * crash hook, logging and the small helpers the other keyring files share.
 * The cache and the data plane are in keyring_cache.c.
 */
#include "kms/keys/keyring.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"
#include "kms/keys/keyring_impl.h"

#define KR_LOG_LINE_MAX 512

static const struct {
	const char *name;
	kr_crash_point point;
} crash_points[] = {
	{ "create:after-intent", KR_CRASH_CREATE_AFTER_INTENT },
	{ "create:after-hsm", KR_CRASH_CREATE_AFTER_HSM },
	{ "rotate:after-intent", KR_CRASH_ROTATE_AFTER_INTENT },
	{ "rotate:after-hsm", KR_CRASH_ROTATE_AFTER_HSM },
	{ "destroy:after-hsm", KR_CRASH_DESTROY_AFTER_HSM },
	{ "rewrap:after-hsm", KR_CRASH_REWRAP_AFTER_HSM },
	{ "rewrap:after-commit", KR_CRASH_REWRAP_AFTER_COMMIT },
	{ "retire:after-hsm", KR_CRASH_RETIRE_AFTER_HSM },
};

void kr_log(const char *level, const char *fmt, ...)
{
	char body[KR_LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof body, fmt, ap);
	va_end(ap);
	kms_log(level, "keyring: %s", body);
}

void kr_crash_point_reached(const keyring *kr, kr_crash_point point)
{
	if (point == KR_CRASH_NONE || kr->crash_at != point)
		return;
	for (size_t i = 0; i < sizeof crash_points / sizeof crash_points[0]; i++)
		if (crash_points[i].point == point)
			kr_log("warn", "test hook: KMS_TEST_CRASH_AT=%s: exiting now", crash_points[i].name);
	_exit(KEYRING_CRASH_EXIT_CODE);
}

static kms_status crash_point_parse(const char *value, kr_crash_point *out)
{
	*out = KR_CRASH_NONE;
	if (!value || !value[0])
		return KMS_OK;
	for (size_t i = 0; i < sizeof crash_points / sizeof crash_points[0]; i++)
		if (strcmp(value, crash_points[i].name) == 0) {
			*out = crash_points[i].point;
			return KMS_OK;
		}
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "keyring: KMS_TEST_CRASH_AT names no crash point");
}

bool kr_text_ok(const char *s, size_t min, size_t max)
{
	if (!s)
		return min == 0;
	size_t len = strnlen(s, max + 1);
	return len >= min && len <= max && kms_utf8_valid((const uint8_t *)s, len, NULL);
}

pthread_mutex_t *kr_stripe(keyring *kr, const uint8_t id[KMS_KEYID_BYTES])
{
	return &kr->stripes[id[0] & (KR_STRIPES - 1)];
}

kms_status kr_object_id(const uint8_t id[KMS_KEYID_BYTES], uint32_t version, hsm_object_id *out)
{
	memset(out, 0, sizeof *out);
	KMS_GUARD(keyid_hsm_object_id(id, version, out->bytes));
	out->len = KMS_KEYID_HSM_ID_LEN;
	return KMS_OK;
}

kms_status kr_key_get_visible(keyring *kr, const char *id_text, store_key *out)
{
	KMS_GUARD(store_key_get(kr->store, id_text, out));
	if (out->lifecycle == KEY_LIFECYCLE_CREATING) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_NOT_FOUND, "key %s not found", id_text);
	}
	return KMS_OK;
}

/* ---- open and close ---- */

static kms_status config_apply(keyring *kr, const keyring_config *cfg)
{
	const char *region = cfg->region;
	KMS_ENSURE(region && region[0], KMS_INVALID_ARGUMENT, "keyring: no region configured");
	size_t len = strnlen(region, KR_REGION_MAX + 1);
	KMS_ENSURE(len <= KR_REGION_MAX, KMS_INVALID_ARGUMENT,
	           "keyring: region longer than %d characters", KR_REGION_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = region[i];
		KMS_ENSURE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-',
		           KMS_INVALID_ARGUMENT, "keyring: region: character %zu is not [a-z0-9-]", i);
	}
	memcpy(kr->region, region, len + 1);

	kr->gcm_max = cfg->gcm_max_encryptions ? cfg->gcm_max_encryptions
	                                       : KEYRING_GCM_MAX_ENCRYPTIONS_DEFAULT;
	KMS_ENSURE(kr->gcm_max <= (UINT64_C(1) << 32), KMS_INVALID_ARGUMENT,
	           "keyring: gcm_max_encryptions above 2^32 (NIST SP 800-38D)");
	kr->reserve_block = cfg->reserve_block ? cfg->reserve_block : KEYRING_RESERVE_BLOCK_DEFAULT;
	if (kr->reserve_block > kr->gcm_max)
		kr->reserve_block = (uint32_t)kr->gcm_max;
	kr->deletion_window_days = cfg->deletion_window_days ? cfg->deletion_window_days
	                                                     : KEYRING_DELETION_WINDOW_DEFAULT;
	KMS_ENSURE(kr->deletion_window_days >= KMS_DELETION_DAYS_MIN &&
	                   kr->deletion_window_days <= KMS_DELETION_DAYS_MAX,
	           KMS_INVALID_ARGUMENT, "keyring: default deletion window must be %d..%d days",
	           KMS_DELETION_DAYS_MIN, KMS_DELETION_DAYS_MAX);
	kr->seconds_per_day = cfg->seconds_per_day ? cfg->seconds_per_day : KEYRING_SECONDS_PER_DAY;
	kr->entry_cap = cfg->metadata_cache_entries ? cfg->metadata_cache_entries
	                                            : KEYRING_METADATA_CACHE_DEFAULT;
	KMS_ENSURE(kr->entry_cap <= KEYRING_METADATA_CACHE_MAX, KMS_INVALID_ARGUMENT,
	           "keyring: metadata_cache_entries above %u", KEYRING_METADATA_CACHE_MAX);
	kr->max_hsm_resident = cfg->max_hsm_resident ? cfg->max_hsm_resident
	                                             : KEYRING_MAX_HSM_RESIDENT_DEFAULT;
	KMS_ENSURE(kr->max_hsm_resident <= KEYRING_MAX_HSM_RESIDENT_MAX, KMS_INVALID_ARGUMENT,
	           "keyring: max_hsm_resident above %u", KEYRING_MAX_HSM_RESIDENT_MAX);
	kr->rewrap_pages = cfg->rewrap_pages_per_tick ? cfg->rewrap_pages_per_tick
	                                              : KEYRING_REWRAP_PAGES;
	KMS_ENSURE(kr->rewrap_pages <= KEYRING_REWRAP_PAGES_MAX, KMS_INVALID_ARGUMENT,
	           "keyring: rewrap_pages_per_tick above %u", KEYRING_REWRAP_PAGES_MAX);
	uint32_t unwrapped = cfg->unwrapped_cache_entries ? cfg->unwrapped_cache_entries
	                                                  : KEYRING_UNWRAPPED_CACHE_DEFAULT;
	KMS_ENSURE(unwrapped <= KEYRING_UNWRAPPED_CACHE_MAX, KMS_INVALID_ARGUMENT,
	           "keyring: cache_entries above %u", KEYRING_UNWRAPPED_CACHE_MAX);
	return hsm_keycache_configure(kr->hsm, unwrapped);
}

kms_status keyring_open(hsm *h, const char *data_dir, const keyring_config *cfg, keyring **out)
{
	kms_status status;
	bool created = false;
	keyring *kr;

	*out = NULL;
	KMS_ENSURE(h && data_dir && cfg, KMS_INVALID_ARGUMENT, "keyring: missing argument");
	kr = calloc(1, sizeof *kr);
	KMS_ENSURE(kr, KMS_INTERNAL, "keyring: out of memory");
	for (size_t i = 0; i < KR_STRIPES; i++)
		pthread_mutex_init(&kr->stripes[i], NULL);
	pthread_mutex_init(&kr->cache_lock, NULL);
	pthread_rwlock_init(&kr->kek_rwlock, NULL);
	kr->hsm = h;
	KMS_GUARD_OUT(status, kr_cache_init(kr));
	KMS_GUARD_OUT(status, config_apply(kr, cfg));
	KMS_GUARD_OUT(status, crash_point_parse(getenv("KMS_TEST_CRASH_AT"), &kr->crash_at));
	uint8_t seed[sizeof kr->alias_seed];
	KMS_GUARD_OUT(status, hsm_random(h, seed, sizeof seed));
	memcpy(&kr->alias_seed, seed, sizeof seed);
	store_options so = { 0 };
	if (cfg->store)
		so = *cfg->store;
	so.data_dir = data_dir;
	/* On PostgreSQL, replicas start one at a time: the lock is held
	 * through reconciliation and the KEK's start (two replicas making the
	 * first KEK at once would make two), then let go. */
	kr->shared = so.pg_url != NULL;
	so.pg_exclusive = kr->shared;
	KMS_GUARD_OUT(status, store_open_with(&so, &kr->store, &created));
	if (kr->shared) {
		uint64_t generation;
		KMS_GUARD_OUT(status, store_generation_get(kr->store, &generation));
		atomic_store(&kr->generation, generation);
	}
	KMS_GUARD_OUT(status, kr_reconcile(kr, created));
	KMS_GUARD_OUT(status, kr_kek_open(kr, created));
	if (kr->shared) {
		store_exclusive_release(kr->store);
		kr_log("info", "store shared with other replicas: this is replica %s "
		       "(its data_dir's replica-id)", store_replica_id(kr->store));
	}
	*out = kr;
	return KMS_OK;
out:
	keyring_close(kr);
	return status;
}

store *keyring_store(keyring *kr)
{
	return kr->store;
}

void keyring_close(keyring *kr)
{
	if (!kr)
		return;
	store_close(kr->store);
	kr_cache_free(kr);
	free(kr->missing);
	for (size_t i = 0; i < KR_STRIPES; i++)
		pthread_mutex_destroy(&kr->stripes[i]);
	pthread_mutex_destroy(&kr->cache_lock);
	pthread_rwlock_destroy(&kr->kek_rwlock);
	free(kr);
}
