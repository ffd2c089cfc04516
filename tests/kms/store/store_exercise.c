/*
 * store_exercise.c: a store with a row of every kind, and a call of every
 * store function (store_exercise.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/context.h"
#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_consents.h"
#include "kms/store/store_internal.h"
#include "tests/kms/store/store_exercise.h"
#include "tests/support/store_test.h"

/* ---- the statements, by name ---- */

#define NAME(id) [id] = #id
static const char *const stmt_names[S_COUNT] = {
	NAME(S_BEGIN), NAME(S_BEGIN_READ), NAME(S_BEGIN_PG), NAME(S_BEGIN_READ_PG), NAME(S_PG_VERSION_TABLE),
	NAME(S_PG_VERSION),
	NAME(S_COMMIT), NAME(S_KEY_INSERT), NAME(S_KEY_GET),
	NAME(S_KEY_UPDATE), NAME(S_KEY_DELETE), NAME(S_KEY_LIST), NAME(S_KEY_IDS_CREATING),
	NAME(S_KEY_IDS_DESTROYING), NAME(S_KEY_IDS_DELETION_DUE), NAME(S_KEY_IDS_ROTATION_DUE),
	NAME(S_POLICY_GET), NAME(S_POLICY_SET), NAME(S_VERSION_INSERT), NAME(S_VERSION_GET),
	NAME(S_VERSION_SET_STATE), NAME(S_VERSION_DELETE), NAME(S_VERSION_RESERVE),
	NAME(S_VERSION_MAX), NAME(S_VERSIONS_LIST), NAME(S_ALIAS_INSERT),
	NAME(S_ALIAS_GET), NAME(S_ALIAS_RETARGET), NAME(S_ALIAS_DELETE),
	NAME(S_ALIASES_DELETE_FOR_KEY), NAME(S_ALIAS_COUNT), NAME(S_ALIAS_LIST_ALL),
	NAME(S_ALIAS_LIST_KEY), NAME(S_TAG_PUT), NAME(S_TAG_DELETE), NAME(S_TAG_COUNT),
	NAME(S_TAGS_LIST), NAME(S_PRINCIPAL_INSERT), NAME(S_PRINCIPAL_GET), NAME(S_PRINCIPAL_LIST),
	NAME(S_PRINCIPAL_ANY), NAME(S_PRINCIPAL_SET_STATE), NAME(S_PRINCIPAL_TOMBSTONE),
	NAME(S_PRINCIPAL_KEYS_REVOKE), NAME(S_PRINCIPAL_GRANTS_REVOKE),
	NAME(S_ACCESS_KEY_COUNT_ACTIVE), NAME(S_ACCESS_KEY_INSERT), NAME(S_ACCESS_KEY_GET),
	NAME(S_ACCESS_KEY_LIST), NAME(S_ACCESS_KEY_REVOKE), NAME(S_GRANT_KEY_VISIBLE),
	NAME(S_GRANT_COUNT_LIVE), NAME(S_GRANT_INSERT), NAME(S_GRANT_GET), NAME(S_GRANT_LIST_KEY),
	NAME(S_GRANT_LIST_GRANTEE), NAME(S_GRANT_END), NAME(S_GRANTS_LIVE),
	NAME(S_KEYS_RESIDENT_COUNT), NAME(S_VERSIONS_CREATING), NAME(S_VERSIONS_RESIDENT),
	NAME(S_VERSION_MATERIAL_GET), NAME(S_VERSION_PUBLIC_KEY_SET),
	NAME(S_VERSION_PUBLIC_KEY_GET), NAME(S_VERSION_REWRAP), NAME(S_VERSIONS_UNDER_KEK),
	NAME(S_VERSIONS_UNDER_KEK_COUNT), NAME(S_KEK_INSERT), NAME(S_KEK_GET),
	NAME(S_KEK_GET_CURRENT), NAME(S_KEK_LIST), NAME(S_KEK_SET_STATE), NAME(S_KEK_LOCK), NAME(S_CM_INSERT),
	NAME(S_CM_GET), NAME(S_CM_BY_KID), NAME(S_CM_LIST), NAME(S_CM_REMOVE),
	NAME(S_CONSENT_INSERT), NAME(S_CONSENT_GET), NAME(S_CONSENT_ARTEFACT),
	NAME(S_CONSENT_SET_STATUS), NAME(S_CONSENT_TAKE_USE), NAME(S_CONSENT_LIST),
	NAME(S_DP_KEY_GET), NAME(S_DP_KEY_FIRST), NAME(S_DP_KEY_ERASE_DUE),
	NAME(S_DP_KEYS_NOTICE_FUTURE), NAME(S_DP_KEYS_OF_KEY),
	NAME(S_DP_KEYS_OF_DP), NAME(S_DP_KEY_INSERT), NAME(S_DP_KEY_MATERIAL_GET),
	NAME(S_DP_KEY_ERASE), NAME(S_DP_KEY_SET_HOLD), NAME(S_DP_KEY_NOTICE_SET),
	NAME(S_DP_KEYS_DESTROY_FOR_KEY), NAME(S_DP_KEYS_NOTICE_DUE), NAME(S_DP_KEYS_ERASURE_DUE),
	NAME(S_DP_KEY_REWRAP), NAME(S_DP_KEYS_UNDER_KEK), NAME(S_DP_KEYS_UNDER_KEK_COUNT),
	NAME(S_RETENTION_PUT), NAME(S_RETENTION_DELETE), NAME(S_RETENTION_APPLY),
	NAME(S_RETENTION_GET), NAME(S_GENERATION_GET), NAME(S_KEY_BY_REQUEST),
	NAME(S_AUDIT_SUBMIT), NAME(S_AUDIT_LEASE), NAME(S_AUDIT_LEASE_GET),
	NAME(S_AUDIT_LEASE_RELEASE), NAME(S_AUDIT_LEASE_CHECK), NAME(S_AUDIT_NEXT_SEQ),
	NAME(S_AUDIT_PENDING_TAKE), NAME(S_AUDIT_SEQUENCE), NAME(S_AUDIT_PENDING_DROP),
	NAME(S_AUDIT_ENTRIES), NAME(S_AUDIT_CHECKPOINT_GET), NAME(S_AUDIT_CHECKPOINT_PUT),
	NAME(S_AUDIT_COUNT_ENTRIES), NAME(S_AUDIT_COUNT_PENDING), NAME(S_AUDIT_PENDING_ANY),
	NAME(S_AUDIT_SEED), NAME(S_AUDIT_WATCH), NAME(S_REQUEST_GET), NAME(S_REQUEST_PUT), NAME(S_REQUEST_EXPIRE),
};
_Static_assert(S_REQUEST_EXPIRE + 1 == S_COUNT, "name every statement in stmt_names");

const char *store_ex_stmt_name(store_stmt_id id)
{
	return stmt_names[id] ? stmt_names[id] : "(unnamed statement)";
}

/* ---- a database with a row of every kind ---- */

static const char *key_id_n(unsigned n)
{
	static char ids[8][KMS_KEYID_TEXT_SIZE];
	static int next;
	char *p = ids[next++ % 8];
	snprintf(p, KMS_KEYID_TEXT_SIZE, "k-%032x", n);
	return p;
}

const char *store_ex_authz_id(const char *prefix, unsigned n)
{
	static char ids[8][AUTHZ_ID_SIZE];
	static int next;
	char *p = ids[next++ % 8];
	uint8_t random[AUTHZ_ID_RANDOM_BYTES] = { 0 };
	random[0] = (uint8_t)(n >> 8);
	random[1] = (uint8_t)n;
	assert_ok(authz_names_id_format(prefix, random, p));
	return p;
}

/* Key n's id, in three blocks of the id order: the due keys (n % 10 is 0,
 * due for deletion, or 2, due for rotation) sort after the rest, and the
 * wrapped keys (5) after them. A query that walked the keys in id order to
 * find the due ones would step through every other key first; a page of
 * resident versions that walked all versions would step through the
 * wrapped block at the end. */
const char *store_ex_id_of(unsigned n)
{
	if (n % 10 == 5)
		return key_id_n(0x40000000u + n);
	if (n % 10 == 0 || n % 10 == 2)
		return key_id_n(0x20000000u + n);
	return key_id_n(n);
}

static const uint8_t *blob(uint8_t tag)
{
	static uint8_t b[4][40];
	static int next;
	uint8_t *p = b[next++ % 4];
	memset(p, 0xa5, 40);
	p[0] = tag;
	return p;
}

#define NOW STORE_EX_NOW
#define DUE_AT 100                /* before NOW */
#define LATER 1000000000          /* after NOW */

/*
 * Key n's row, by n % 10: 0 pending deletion and due, 1 pending deletion
 * not due yet, 2 rotation due, 3 rotation date passed but disabled (not
 * due), 4 rotation not due yet, 5 wrapped (made apart: see add_wrapped),
 * 6..9 plain enabled keys, 7 with a live grant to payments-svc (see
 * add_grants). hsm-resident unless 5.
 */
static store_key scale_key(unsigned n)
{
	store_key k;
	memset(&k, 0, sizeof k);
	snprintf(k.id, sizeof k.id, "%s", store_ex_id_of(n));
	snprintf(k.description, sizeof k.description, "key number %u", n);
	k.spec = KEY_SPEC_AES_256;
	k.usage = KEY_USAGE_ENCRYPT_DECRYPT;
	k.state = KEY_STATE_ENABLED;
	k.lifecycle = KEY_LIFECYCLE_READY;
	k.primary_version = 1;
	k.created_at = 1;
	snprintf(k.region, sizeof k.region, "in-test-1");
	k.protection = KEY_PROTECTION_HSM_RESIDENT;
	switch (n % 10) {
	case 0:
	case 1:
		k.state = KEY_STATE_PENDING_DELETION;
		k.deletion_date = n % 10 == 0 ? DUE_AT : LATER;
		break;
	case 2:
	case 3:
	case 4:
		k.rotation_period_days = 30;
		k.next_rotation_at = n % 10 == 4 ? LATER : DUE_AT;
		if (n % 10 == 3)
			k.state = KEY_STATE_DISABLED;
		break;
	case 5:
		k.protection = KEY_PROTECTION_WRAPPED;
		break;
	default:
		break;
	}
	return k;
}

/* A wrapped key with v1 active under kek_id; inside the caller's transaction. */
static void add_wrapped(store *st, unsigned n, uint32_t kek_id)
{
	store_key k = scale_key(n);
	assert_ok(store_key_insert(st, &k, ""));
	store_version v1 = { .version = 1, .created_at = 2, .state = VERSION_STATE_ACTIVE };
	assert_ok(store_version_insert_wrapped(st, k.id, &v1, kek_id, blob((uint8_t)n), 40));
}

#define BATCH 1000

/* Keys 1..n_keys as scale_key says (the hsm-resident ones through
 * store_keys_insert_batch), under KEK 1 (made current here), in one
 * transaction. */
void store_ex_populate(store *st, unsigned n_keys)
{
	static store_key keys[BATCH];
	static store_version v1s[BATCH];
	store_kek kek;
	assert_ok(store_kek_create(st, 1, &kek));
	assert_ok(store_kek_make_current(st, kek.id));
	assert_ok(store_begin(st));
	size_t used = 0;
	for (unsigned n = 1; n <= n_keys; n++) {
		if (n % 10 == 5) {
			add_wrapped(st, n, kek.id);
		} else {
			keys[used] = scale_key(n);
			v1s[used] = (store_version){ .version = 1, .created_at = 2,
				                     .state = VERSION_STATE_ACTIVE };
			used++;
		}
		if (used == BATCH || n == n_keys) {
			size_t failed;
			assert_ok(store_keys_insert_batch(st, keys, NULL, v1s, used, &failed));
			used = 0;
		}
	}
	assert_ok(store_commit(st));
}

static store_principal principal(const char *name)
{
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.roles = PRINCIPAL_ROLE_APP;
	p.state = PRINCIPAL_STATE_ENABLED;
	p.created_at = 100;
	p.updated_at = 100;
	return p;
}

static store_access_key access_key(unsigned n, const char *owner)
{
	store_access_key k;
	memset(&k, 0, sizeof k);
	snprintf(k.id, sizeof k.id, "%s", store_ex_authz_id("AK", n));
	snprintf(k.principal, sizeof k.principal, "%s", owner);
	memset(k.wrapped, 0xa5, 61);
	k.wrapped_len = 61;
	k.created_at = 100 + n;
	return k;
}

static store_grant grant(unsigned n, const char *key_id, const char *grantee)
{
	static const char *const ops[] = { "decrypt", "encrypt" };
	store_grant g;
	memset(&g, 0, sizeof g);
	snprintf(g.id, sizeof g.id, "%s", store_ex_authz_id("GR", n));
	snprintf(g.key_id, sizeof g.key_id, "%s", key_id);
	snprintf(g.grantee, sizeof g.grantee, "%s", grantee);
	snprintf(g.creator, sizeof g.creator, "alice");
	assert_ok(store_grant_ops_join(ops, 2, g.operations));
	assert_ok(context_encode(NULL, 0, g.context, sizeof g.context, &g.context_len));
	g.created_at = 500;
	return g;
}

static void exercise_keys(store *st)
{
	store_key k;
	char ids[4][KMS_KEYID_TEXT_SIZE];
	store_key rows[4];
	size_t n;
	assert_ok(store_key_get(st, store_ex_id_of(7), &k));
	k.description[0] = '\0';
	assert_ok(store_key_update(st, &k));
	assert_ok(store_key_list(st, store_ex_id_of(3), 4, rows, &n));
	for (store_key_query q = STORE_KEYS_CREATING; q <= STORE_KEYS_ROTATION_DUE; q++)
		assert_ok(store_key_ids(st, q, NOW, 4, ids, &n));
	char *policy;
	assert_ok(store_policy_get(st, store_ex_id_of(7), &policy));
	free(policy);
	assert_ok(store_policy_set(st, store_ex_id_of(7), ""));
	uint64_t count;
	assert_ok(store_keys_resident_count(st, &count));

	/* A key made and rolled back (as reconciliation does). */
	k = scale_key(900001);
	k.lifecycle = KEY_LIFECYCLE_CREATING;
	assert_ok(store_key_insert(st, &k, ""));
	assert_ok(store_key_delete(st, k.id, NULL));
}

static void exercise_versions(store *st)
{
	const char *id = store_ex_id_of(7);
	store_version v = { .version = 2, .created_at = 3, .state = VERSION_STATE_CREATING };
	assert_ok(store_version_insert(st, id, &v));
	store_version got;
	assert_ok(store_version_get(st, id, 2, &got));
	assert_ok(store_version_reserve(st, id, 1, 10));
	uint32_t max;
	assert_ok(store_version_max(st, id, &max));
	store_version *list;
	size_t n;
	assert_ok(store_versions_list(st, id, &list, &n));
	free(list);
	store_version_row rows[4];
	assert_ok(store_versions_creating(st, INT64_MAX, true, 4, rows, &n));
	assert_ok(store_versions_resident(st, id, 1, 4, rows, &n));
	assert_ok(store_version_delete(st, id, 2, NULL));
	assert_ok(store_version_set_state(st, store_ex_id_of(6), 1, VERSION_STATE_DESTROYED));
	char made[KMS_KEYID_TEXT_SIZE];
	key_lifecycle lifecycle;
	char ref[STORE_REQUEST_REF_SIZE];
	memset(ref, 'a', STORE_REQUEST_REF_SIZE - 1);
	ref[STORE_REQUEST_REF_SIZE - 1] = '\0';
	assert_status(store_key_by_request(st, ref, made, &lifecycle), KMS_NOT_FOUND);
	uint64_t generation;
	assert_ok(store_generation_get(st, &generation));
	assert_true(generation > 0); /* the destruction just above raised it */
}

static void exercise_material(store *st)
{
	store_material m;
	assert_ok(store_version_material_get(st, store_ex_id_of(5), 1, &m));
	uint8_t point[STORE_PUBLIC_KEY_MAX];
	size_t point_len;
	memset(point, 4, sizeof point);
	assert_ok(store_version_public_key_set(st, store_ex_id_of(5), 1, point, sizeof point));
	assert_ok(store_version_public_key_get(st, store_ex_id_of(5), 1, point, &point_len));
	store_kek kek;
	assert_ok(store_kek_create(st, 2, &kek));
	assert_ok(store_kek_make_current(st, kek.id));
	assert_ok(store_version_rewrap(st, store_ex_id_of(5), 1, 1, kek.id, blob(9), 40));
	store_version_ref refs[4];
	size_t n;
	assert_ok(store_versions_under_kek(st, 1, "", 0, 4, refs, &n));
	uint64_t count;
	assert_ok(store_versions_under_kek_count(st, 1, &count));
	assert_ok(store_kek_get(st, 1, &kek));
	assert_ok(store_kek_get_current(st, &kek));
	store_kek keks[4];
	assert_ok(store_kek_list(st, 0, 4, keks, &n));
}

/* Per-data-principal sub-keys and retention (after exercise_material: KEK
 * 2 is current, KEK 1 draining). */
static void exercise_dp(store *st)
{
	store_dp_key row = { .state = DP_KEY_ACTIVE, .version = 1, .created_at = 10,
	                     .retention_ends_at = 100 };
	snprintf(row.key_id, sizeof row.key_id, "%s", store_ex_id_of(5));
	snprintf(row.dp, sizeof row.dp, "kp_0000abcd_1_%s", "abcdefghijklmnopqrstuvwxyz234567");
	snprintf(row.purpose, sizeof row.purpose, "101");
	int64_t id, other;
	assert_ok(store_dp_key_insert(st, &row, 2, blob(3), 40, &id));
	store_dp_key got, due[4];
	assert_ok(store_dp_key_get(st, row.key_id, row.dp, 1, &got));
	assert_ok(store_dp_key_first(st, row.key_id, row.dp, &got));
	store_material m;
	assert_ok(store_dp_key_material_get(st, id, &m));
	size_t n;
	bool changed;
	assert_ok(store_dp_keys_due(st, STORE_DP_NOTICE_DUE, 200, 0, 0, 0, 4, due, &n));
	assert_ok(store_dp_key_notice_set(st, row.key_id, row.dp, 50, &changed));
	assert_ok(store_dp_keys_due(st, STORE_DP_ERASURE_DUE, 200, 60, 0, 0, 4, due, &n));
	assert_ok(store_dp_keys_notice_future(st, 60, &n));
	int64_t ids[4];
	uint32_t versions[4];
	assert_ok(store_dp_keys_under_kek(st, 2, 0, 4, ids, &n));
	assert_ok(store_dp_keys_of_key(st, row.key_id, 0, 4, ids, &n));
	assert_ok(store_dp_keys_of_dp(st, row.key_id, row.dp, 0, 4, ids, versions, &n));
	uint64_t count;
	assert_ok(store_dp_keys_under_kek_count(st, 2, &count));
	assert_ok(store_retention_set(st, row.key_id, "101", 30, 86400));
	assert_ok(store_retention_set(st, row.key_id, "102", 0, 86400));
	uint32_t days;
	assert_ok(store_retention_get(st, row.key_id, "101", &days));
	assert_ok(store_dp_key_set_hold(st, row.key_id, row.dp, ""));
	assert_ok(store_dp_key_erase_due(st, &got, 55, "test", &changed));
	assert_ok(store_dp_key_erase(st, row.key_id, row.dp, 60, "test"));
	row.dp[3] = '1';
	assert_ok(store_dp_key_insert(st, &row, 2, blob(4), 40, &other));
	store_kek kek;
	assert_ok(store_kek_create(st, 3, &kek));
	assert_ok(store_kek_make_current(st, kek.id));
	assert_ok(store_dp_key_rewrap(st, other, 2, kek.id, blob(5), 40));
	assert_ok(store_dp_keys_destroy_for_key(st, row.key_id, 70));
	/* A retirement's lock on a KEK's row (kek_retire). */
	assert_ok(store_begin(st));
	assert_ok(store_kek_lock(st, kek.id));
	assert_status(store_kek_lock(st, 999), KMS_NOT_FOUND);
	store_rollback(st);
}

static void exercise_aliases_tags(store *st)
{
	store_alias a = { .name = "alias/plans", .created_at = 1 };
	snprintf(a.key_id, sizeof a.key_id, "%s", store_ex_id_of(7));
	assert_ok(store_alias_insert(st, &a));
	store_alias got;
	assert_ok(store_alias_get(st, a.name, &got));
	assert_ok(store_alias_retarget(st, a.name, store_ex_id_of(8)));
	size_t n;
	assert_ok(store_alias_count(st, store_ex_id_of(8), &n));
	store_alias *list;
	assert_ok(store_alias_list(st, NULL, "", 4, &list, &n));
	free(list);
	assert_ok(store_alias_list(st, store_ex_id_of(8), "", 4, &list, &n));
	free(list);
	assert_ok(store_alias_delete(st, a.name));
	assert_ok(store_aliases_delete_for_key(st, store_ex_id_of(8)));

	assert_ok(store_tag_put(st, store_ex_id_of(7), "team", "payments"));
	assert_ok(store_tag_count(st, store_ex_id_of(7), &n));
	store_tag *tags;
	assert_ok(store_tags_list(st, store_ex_id_of(7), &tags, &n));
	free(tags);
	assert_ok(store_tag_delete(st, store_ex_id_of(7), "team"));
}

static void exercise_authz(store *st)
{
	bool any;
	assert_ok(store_principals_any(st, &any));
	store_principal p = principal("alice");
	store_access_key k = access_key(1, "alice");
	assert_ok(store_principal_create_with_key(st, &p, &k));
	p = principal("billing-svc");
	assert_ok(store_principal_create(st, &p));
	k = access_key(2, "billing-svc");
	assert_ok(store_access_key_create(st, &k));
	assert_ok(store_principal_get(st, "alice", &p));
	store_principal *plist;
	size_t n;
	assert_ok(store_principal_list(st, "", 4, &plist, &n));
	free(plist);
	assert_ok(store_principal_set_state(st, "alice", PRINCIPAL_STATE_DISABLED, 200));
	store_access_key got_key;
	assert_ok(store_access_key_get(st, k.id, &got_key));
	store_access_key *klist;
	assert_ok(store_access_key_list(st, "billing-svc", 4, &klist, &n));
	free(klist);
	assert_ok(store_access_key_revoke(st, k.id, 300));

	store_grant g = grant(1, store_ex_id_of(7), "billing-svc");
	assert_ok(store_grant_create(st, &g));
	store_grant got_grant;
	assert_ok(store_grant_get(st, g.id, &got_grant));
	store_grant *glist;
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_KEY, store_ex_id_of(7), "", 4, &glist, &n));
	free(glist);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_GRANTEE, "billing-svc", "", 4, &glist, &n));
	free(glist);
	assert_ok(store_grants_live(st, "billing-svc", store_ex_id_of(7), &glist, &n));
	free(glist);
	assert_ok(store_grant_end(st, g.id, GRANT_STATE_RETIRED, 400));
	assert_ok(store_principal_delete(st, "billing-svc", 500));
}

static void exercise_consents(store *st)
{
	store_consent_manager cm = { .id = "finvu", .kid = "finvu-1", .jwk = "{}",
		                     .created_at = 100, .created_by = "alice" };
	snprintf(cm.dp_key, sizeof cm.dp_key, "%s", store_ex_id_of(3));
	assert_ok(store_cm_add(st, &cm));
	store_consent_manager got;
	assert_ok(store_cm_get(st, "finvu", &got));
	assert_ok(store_cm_by_kid(st, "finvu-1", &got));
	store_consent_manager *cms;
	size_t n;
	assert_ok(store_cm_list(st, &cms, &n));
	free(cms);
	store_consent c = { .id = "c-1", .manager = "finvu", .purpose = "101", .start = 100,
		            .expiry = 200, .data_life_end = 300, .frequency_unit = "DAY",
		            .frequency_value = 1, .imported_at = 100, .imported_by = "alice" };
	snprintf(c.dp, sizeof c.dp, "kp_0123abcd_1_abcdefghijklmnopqrstuvwxyz234567");
	static const uint8_t artefact[] = "{}";
	assert_ok(store_consent_insert(st, &c, artefact, 2));
	store_consent got_c;
	assert_ok(store_consent_get(st, "c-1", &got_c));
	uint8_t *bytes;
	size_t len;
	assert_ok(store_consent_artefact(st, "c-1", &bytes, &len));
	free(bytes);
	bool taken;
	assert_ok(store_consent_take_use(st, "c-1", 0, 1, &taken));
	assert_ok(store_consent_set_status(st, "c-1", "ACTIVE", "PAUSED", "alice", 150));
	store_consent *list;
	bool more;
	store_consent_filter f = { .purpose = "101" };
	assert_ok(store_consent_list(st, &f, "", 10, &list, &n, &more));
	free(list);
	assert_ok(store_cm_remove(st, "finvu", 160));
}

/* Calls every store function, so every statement is prepared; fails naming
 * any statement still unprepared for which unused(id) is false (a new one
 * this does not reach). */
/* The entries exercise_audit reads back. */
typedef struct audit_read {
	char text[3][16];
	uint64_t first;
	size_t n;
} audit_read;

static kms_status audit_collect(void *ctx, uint64_t seq, const uint8_t *entry, size_t len)
{
	audit_read *r = ctx;
	assert_true(r->n < 3 && len < sizeof r->text[0]);
	if (r->n == 0)
		r->first = seq;
	memcpy(r->text[r->n], entry, len);
	r->text[r->n++][len] = '\0';
	return KMS_OK;
}

/* The fleet's audit log: entries in, numbered only at the lease's epoch,
 * read back in order; the checkpoint only grows. */
static void exercise_audit(store *st)
{
	const char *const entries[] = { "{\"a\":1}", "{\"b\":2}", "{\"c\":3}" };
	const size_t lens[] = { 7, 7, 7 };
	uint64_t numbered = 1, pending = 1, epoch = 0, seen_epoch = 0, size = 0;
	bool held = false;
	size_t moved = 1, n = 0;
	int64_t expires = 0;
	char holder[STORE_AUDIT_HOLDER_SIZE];
	char *note = NULL;
	assert_ok(store_audit_counts(st, &numbered, &pending));
	assert_true(numbered == 0 && pending == 0);
	int64_t ids[3] = { 0, 0, 0 }, min_pending = 0;
	uint64_t watched_n = 9;
	assert_ok(store_audit_watch(st, &min_pending, &watched_n));
	assert_true(min_pending == 0 && watched_n == 0);
	assert_ok(store_audit_submit(st, entries, lens, NULL, NULL, ids, 3));
	assert_true(ids[0] >= 1 && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1);
	assert_ok(store_audit_watch(st, &min_pending, &watched_n));
	assert_true(min_pending == ids[0] && watched_n == 0);
	/* Nobody numbers without the lease (with nothing pending, nothing is
	 * checked: no transaction). */
	assert_status(store_audit_sequence(st, 99, 10, &moved), KMS_FAILED_PRECONDITION);
	assert_int_equal(moved, 0);
	assert_ok(store_audit_lease(st, 1000, 3000, &held, &epoch));
	assert_true(held);
	/* The epoch rises when the holder changes (SQLite's one kmsd is ''). */
	assert_int_equal(epoch, store_is_pg(st) ? 1 : 0);
	assert_ok(store_audit_lease_holder(st, holder, &seen_epoch, &expires));
	assert_string_equal(holder, store_replica_id(st));
	assert_int_equal(seen_epoch, epoch);
	assert_int_equal(expires, 4000);
	assert_ok(store_audit_sequence(st, epoch, 2, &moved));
	assert_int_equal(moved, 2);
	assert_ok(store_audit_sequence(st, epoch, 10, &moved));
	assert_int_equal(moved, 1);
	assert_ok(store_audit_sequence(st, epoch, 10, &moved));
	assert_int_equal(moved, 0);
	assert_ok(store_audit_sequence(st, 99, 10, &moved)); /* nothing pending: nothing done */
	assert_int_equal(moved, 0);
	assert_ok(store_audit_counts(st, &numbered, &pending));
	assert_true(numbered == 3 && pending == 0);
	audit_read r = { .n = 0 };
	assert_ok(store_audit_entries(st, 1, 10, audit_collect, &r, &n));
	assert_int_equal(n, 2);
	assert_int_equal(r.first, 1);
	assert_string_equal(r.text[0], entries[1]);
	assert_string_equal(r.text[1], entries[2]);
	/* Entries 3 and 4 as a replica's own log would seed them; a gap or a
	 * wrong epoch is refused. */
	const char *const seeds[] = { "{\"d\":4}", "{\"e\":5}" };
	const size_t seed_lens[] = { 7, 7 };
	assert_ok(store_audit_seed(st, epoch, 3, seeds, seed_lens, 2));
	assert_status(store_audit_seed(st, epoch + 1, 5, seeds, seed_lens, 1),
	              KMS_FAILED_PRECONDITION);
	assert_status(store_audit_seed(st, epoch, 7, seeds, seed_lens, 1), KMS_INTERNAL);
	assert_ok(store_audit_counts(st, &numbered, &pending));
	assert_true(numbered == 5 && pending == 0);
	assert_status(store_audit_checkpoint_get(st, &size, &note), KMS_NOT_FOUND);
	assert_ok(store_audit_checkpoint_put(st, epoch, 2, "note of 2"));
	assert_ok(store_audit_checkpoint_put(st, epoch, 1, "note of 1")); /* smaller: kept */
	assert_ok(store_audit_checkpoint_get(st, &size, &note));
	assert_int_equal(size, 2);
	assert_string_equal(note, "note of 2");
	free(note);
	assert_status(store_audit_checkpoint_put(st, epoch + 1, 3, "note of 3"),
	              KMS_FAILED_PRECONDITION);
	assert_ok(store_audit_lease_release(st));
	assert_ok(store_audit_lease_holder(st, holder, &seen_epoch, &expires));
	assert_string_equal(holder, "");
	assert_int_equal(expires, 0);
}

/* Request records: added with their entries, one per (principal,
 * request id), the first kept; read back; expired. */
static void exercise_requests(store *st)
{
	const char *const entries[] = { "{\"r\":1}", "{\"r\":2}", "{\"r\":3}" };
	const size_t lens[] = { 7, 7, 7 };
	uint8_t blob[40];
	memset(blob, 0xb1, sizeof blob);
	store_request_record a = { .principal = "app", .request_id = "req-1", .op = 10,
	                           .result = blob, .result_len = sizeof blob, .created_ms = 1000 };
	store_request_record b = { .principal = "app", .request_id = "req-2", .op = 11,
	                           .created_ms = 5000 };
	memset(a.digest, 0xa1, sizeof a.digest);
	memset(b.digest, 0xa2, sizeof b.digest);
	const store_request_record *records[] = { &a, NULL, &b };
	bool dup[3] = { true, true, true };
	uint64_t numbered = 0, pending = 0, removed = 9;
	bool busy = true;
	assert_ok(store_audit_counts(st, &numbered, &pending));
	uint64_t before = pending;
	assert_ok(store_audit_submit(st, entries, lens, records, dup, NULL, 3));
	assert_true(!dup[0] && !dup[1] && !dup[2]);
	assert_ok(store_audit_counts(st, &numbered, &pending));
	assert_int_equal(pending, before + 3);
	/* The same request again, in another batch: flagged, the first record
	 * kept, its entry added all the same. */
	store_request_record a2 = a;
	a2.op = 13;
	a2.result = NULL;
	a2.result_len = 0;
	const store_request_record *again[] = { NULL, &a2 };
	assert_ok(store_audit_submit(st, entries, lens, again, dup, NULL, 2));
	assert_true(!dup[0] && dup[1]);
	assert_ok(store_audit_counts(st, &numbered, &pending));
	assert_int_equal(pending, before + 5);
	store_request_record got;
	assert_ok(store_request_get(st, "app", "req-1", &got, &busy));
	assert_int_equal(got.op, 10);
	assert_memory_equal(got.digest, a.digest, sizeof got.digest);
	assert_int_equal(got.result_len, sizeof blob);
	assert_memory_equal(got.result, blob, sizeof blob);
	assert_int_equal(got.created_ms, 1000);
	store_request_record_free(&got);
	assert_ok(store_request_get(st, "app", "req-2", &got, &busy));
	assert_null(got.result);
	assert_int_equal(got.result_len, 0);
	store_request_record_free(&got);
	assert_status(store_request_get(st, "other", "req-1", &got, &busy), KMS_NOT_FOUND);
	assert_false(busy);
	assert_ok(store_request_expire(st, 2000, &removed));
	assert_int_equal(removed, 1);
	assert_status(store_request_get(st, "app", "req-1", &got, &busy), KMS_NOT_FOUND);
	assert_ok(store_request_get(st, "app", "req-2", &got, &busy));
	store_request_record_free(&got);
}

void store_ex_all(store *st, bool (*unused)(store_stmt_id id))
{
	assert_ok(store_begin_read(st));
	assert_ok(store_commit(st));
	exercise_keys(st);
	exercise_versions(st);
	exercise_material(st);
	exercise_dp(st);
	exercise_aliases_tags(st);
	exercise_authz(st);
	exercise_consents(st);
	exercise_audit(st);
	exercise_requests(st);
	for (int id = 0; id < S_COUNT; id++)
		if (!unused((store_stmt_id)id) && !store_stmt_sql((store_stmt_id)id))
			fail_msg("%s was never prepared: call the store function that uses it in "
			         "store_ex_all (tests/kms/store/store_exercise.c)",
			         store_ex_stmt_name((store_stmt_id)id));
}
