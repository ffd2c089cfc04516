/*
 * test_store_plans: the store at scale (docs/store-schema.md).
 *
 * test_plans: every statement the store prepares (each store_stmt_id; the
 * test first calls every store function so each one is prepared, and fails
 * naming any that is not) is run through EXPLAIN QUERY PLAN on a populated
 * database. A plan fails the test, naming the statement, when it scans a
 * table (SCAN of a table or of a full index: only a partial index, whose
 * rows are exactly the ones asked for, may be scanned), builds an automatic
 * index, or sorts in a temp B-tree. The few exceptions are in plan_allowed,
 * each with why it is bounded and off the request path.
 *
 * No ANALYZE: kmsd never runs it, so the plans kmsd gets are the planner's
 * choices without sqlite_stat1, and those are the ones checked here (with
 * no statistics the plans do not depend on how many rows there are, so a
 * small database shows the same plans as a large one). With statistics the
 * planner may rightly scan a table of two rows (keks), so plans checked
 * after an ANALYZE would test the sample, not the schema.
 *
 * test_scale: timing-free. The SQLite VM steps (sqlite3_stmt_status) of a
 * ListKeys page deep in the keyspace, a page of keys due for deletion and
 * of keys due for rotation, a wrapped version's material lookup, a
 * grantee's live grants on one key, and the reconciliation and re-wrap
 * pages are the same with 50,000 keys as with 1,000 (10% of the keys due
 * for each tick, their ids after the others': see id_of): each costs
 * O(page), not O(keys); and none of them steps through a full scan.
 *
 * test_migration_from_3: a schema 3 file migrates and its rebuilt indexes
 * serve the due queries and the grant lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/context.h"
#include "kms/store/store.h"
#include "kms/store/db_sqlite.h"
#include "kms/store/store_consents.h"
#include "tests/support/store_test.h"
#include "kms/store/store_internal.h"


static char dir[STORE_TEST_DIR_SIZE];
static char db_path[STORE_TEST_DB_SIZE];

static int setup(void **state)
{
	(void)state;
	store_test_dir_make("plans", dir, db_path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_test_dir_remove(dir);
	return 0;
}

static store *open_store(void)
{
	return store_test_open(dir);
}

/* ---- the statements, by name ---- */

#define NAME(id) [id] = #id
static const char *const stmt_names[S_COUNT] = {
	NAME(S_BEGIN), NAME(S_BEGIN_READ), NAME(S_COMMIT), NAME(S_KEY_INSERT), NAME(S_KEY_GET),
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
	NAME(S_KEK_GET_CURRENT), NAME(S_KEK_LIST), NAME(S_KEK_SET_STATE), NAME(S_CM_INSERT),
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
	NAME(S_RETENTION_GET),
};
_Static_assert(S_RETENTION_GET + 1 == S_COUNT, "name every statement in stmt_names");

static const char *stmt_name(store_stmt_id id)
{
	return stmt_names[id] ? stmt_names[id] : "(unnamed statement)";
}

/*
 * The allow-list: statements whose plan may scan a table or sort, and why
 * that is bounded and off the request path and the background ticks. Every
 * other statement must seek.
 */
static const char *plan_allowed(store_stmt_id id)
{
	switch (id) {
	case S_PRINCIPAL_ANY:
		/* EXISTS stops at the first row: one step whatever the table
		 * holds. Only kmsd --bootstrap-admin asks. */
		return "EXISTS: stops at the first row";
	case S_KEK_INSERT:
		/* "next" is the one-row derived table of the next KEK number (one
		 * seek for max(id)); PostgreSQL wants it named, and SQLite then
		 * runs it as a co-routine it scans: one row. */
		return "the one row of the next KEK number";
	default:
		return NULL;
	}
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

static const char *authz_id_n(const char *prefix, unsigned n)
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
static const char *id_of(unsigned n)
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

static const int64_t NOW = 1000;  /* the scale test's clock */
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
	snprintf(k.id, sizeof k.id, "%s", id_of(n));
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

/* A live grant to payments-svc on each key n % 10 == 7, written in one
 * transaction on a second connection (store_grant_create takes one
 * transaction each): the grantee's other grants, which the decision's
 * lookup must not walk. */
static void add_grants(store *st, unsigned n_keys)
{
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "payments-svc");
	p.roles = PRINCIPAL_ROLE_APP;
	p.state = PRINCIPAL_STATE_ENABLED;
	assert_ok(store_principal_create(st, &p));
	sqlite3 *db;
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "INSERT INTO grants (id, key_id, grantee, operations, "
	                                    "context, creator, state, created_at) VALUES (?1, ?2, "
	                                    "'payments-svc', 'decrypt,encrypt', x'0000', 'alice', "
	                                    "'live', 500)",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	for (unsigned n = 7; n <= n_keys; n += 10) {
		sqlite3_bind_text(s, 1, authz_id_n("GR", n), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, id_of(n), -1, SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(s), SQLITE_DONE);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* Keys 1..n_keys as scale_key says (the hsm-resident ones through
 * store_keys_insert_batch), under KEK 1 (made current here), in one
 * transaction. */
static void populate(store *st, unsigned n_keys)
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
	add_grants(st, n_keys);
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
	snprintf(k.id, sizeof k.id, "%s", authz_id_n("AK", n));
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
	snprintf(g.id, sizeof g.id, "%s", authz_id_n("GR", n));
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
	assert_ok(store_key_get(st, id_of(7), &k));
	k.description[0] = '\0';
	assert_ok(store_key_update(st, &k));
	assert_ok(store_key_list(st, id_of(3), 4, rows, &n));
	for (store_key_query q = STORE_KEYS_CREATING; q <= STORE_KEYS_ROTATION_DUE; q++)
		assert_ok(store_key_ids(st, q, NOW, 4, ids, &n));
	char *policy;
	assert_ok(store_policy_get(st, id_of(7), &policy));
	free(policy);
	assert_ok(store_policy_set(st, id_of(7), ""));
	uint64_t count;
	assert_ok(store_keys_resident_count(st, &count));

	/* A key made and rolled back (as reconciliation does). */
	k = scale_key(900001);
	k.lifecycle = KEY_LIFECYCLE_CREATING;
	assert_ok(store_key_insert(st, &k, ""));
	assert_ok(store_key_delete(st, k.id));
}

static void exercise_versions(store *st)
{
	const char *id = id_of(7);
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
	assert_ok(store_versions_creating(st, 4, rows, &n));
	assert_ok(store_versions_resident(st, id, 1, 4, rows, &n));
	assert_ok(store_version_delete(st, id, 2));
	assert_ok(store_version_set_state(st, id_of(6), 1, VERSION_STATE_DESTROYED));
}

static void exercise_material(store *st)
{
	store_material m;
	assert_ok(store_version_material_get(st, id_of(5), 1, &m));
	uint8_t point[STORE_PUBLIC_KEY_MAX];
	size_t point_len;
	memset(point, 4, sizeof point);
	assert_ok(store_version_public_key_set(st, id_of(5), 1, point, sizeof point));
	assert_ok(store_version_public_key_get(st, id_of(5), 1, point, &point_len));
	store_kek kek;
	assert_ok(store_kek_create(st, 2, &kek));
	assert_ok(store_kek_make_current(st, kek.id));
	assert_ok(store_version_rewrap(st, id_of(5), 1, 1, kek.id, blob(9), 40));
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
	snprintf(row.key_id, sizeof row.key_id, "%s", id_of(5));
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
}

static void exercise_aliases_tags(store *st)
{
	store_alias a = { .name = "alias/plans", .created_at = 1 };
	snprintf(a.key_id, sizeof a.key_id, "%s", id_of(7));
	assert_ok(store_alias_insert(st, &a));
	store_alias got;
	assert_ok(store_alias_get(st, a.name, &got));
	assert_ok(store_alias_retarget(st, a.name, id_of(8)));
	size_t n;
	assert_ok(store_alias_count(st, id_of(8), &n));
	store_alias *list;
	assert_ok(store_alias_list(st, NULL, "", 4, &list, &n));
	free(list);
	assert_ok(store_alias_list(st, id_of(8), "", 4, &list, &n));
	free(list);
	assert_ok(store_alias_delete(st, a.name));
	assert_ok(store_aliases_delete_for_key(st, id_of(8)));

	assert_ok(store_tag_put(st, id_of(7), "team", "payments"));
	assert_ok(store_tag_count(st, id_of(7), &n));
	store_tag *tags;
	assert_ok(store_tags_list(st, id_of(7), &tags, &n));
	free(tags);
	assert_ok(store_tag_delete(st, id_of(7), "team"));
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

	store_grant g = grant(1, id_of(7), "billing-svc");
	assert_ok(store_grant_create(st, &g));
	store_grant got_grant;
	assert_ok(store_grant_get(st, g.id, &got_grant));
	store_grant *glist;
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_KEY, id_of(7), "", 4, &glist, &n));
	free(glist);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_GRANTEE, "billing-svc", "", 4, &glist, &n));
	free(glist);
	assert_ok(store_grants_live(st, "billing-svc", id_of(7), &glist, &n));
	free(glist);
	assert_ok(store_grant_end(st, g.id, GRANT_STATE_RETIRED, 400));
	assert_ok(store_principal_delete(st, "billing-svc", 500));
}

static void exercise_consents(store *st)
{
	store_consent_manager cm = { .id = "finvu", .kid = "finvu-1", .jwk = "{}",
		                     .created_at = 100, .created_by = "alice" };
	snprintf(cm.dp_key, sizeof cm.dp_key, "%s", id_of(3));
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
 * any statement still unprepared (a new one this test does not reach). */
static void exercise_all(store *st)
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
	for (int id = 0; id < S_COUNT; id++)
		if (!store_stmt_sql((store_stmt_id)id))
			fail_msg("%s was never prepared: call the store function that uses it in "
			         "exercise_all", stmt_name((store_stmt_id)id));
}

/* ---- the plans ---- */

/* Whether index is partial (its CREATE INDEX has a WHERE). */
static bool index_partial(sqlite3 *db, const char *index)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT sql LIKE '% WHERE %' FROM sqlite_schema "
	                                    "WHERE type = 'index' AND name = ?1",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(s, 1, index, -1, SQLITE_TRANSIENT);
	bool partial = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 1;
	sqlite3_finalize(s);
	return partial;
}

/* Why one line of a plan is a full scan or a sort, or NULL if it is
 * neither. "SCAN t USING [COVERING] INDEX i" is allowed for a partial i
 * only: such a scan reads exactly the rows the query asks for. */
static const char *plan_line_fault(sqlite3 *db, const char *detail)
{
	if (strstr(detail, "TEMP B-TREE"))
		return "sorts in a temp B-tree";
	if (strstr(detail, "AUTOMATIC"))
		return "builds an automatic index";
	if (strncmp(detail, "SCAN ", 5) != 0)
		return NULL;
	if (strcmp(detail, "SCAN CONSTANT ROW") == 0 || strncmp(detail, "SCAN (subquery", 14) == 0)
		return NULL;
	const char *using = strstr(detail, " INDEX ");
	if (!using || strstr(detail, "PRIMARY KEY"))
		return "scans a table";
	char index[128];
	snprintf(index, sizeof index, "%s", using + strlen(" INDEX "));
	index[strcspn(index, " ")] = '\0';
	return index_partial(db, index) ? NULL : "scans a whole index";
}

/* Appends the plan of statement id to report; returns the number of faulty
 * lines (0 when allowed). */
static int plan_check(sqlite3 *db, store_stmt_id id, char *report, size_t cap)
{
	const char *sql = store_stmt_sql(id);
	char explain[4096];
	int len = snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
	assert_true(len > 0 && (size_t)len < sizeof explain);
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, explain, -1, &s, NULL) != SQLITE_OK)
		fail_msg("%s: cannot explain: %s", stmt_name(id), sqlite3_errmsg(db));
	int faults = 0;
	size_t used = strlen(report);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *detail = (const char *)sqlite3_column_text(s, 3);
		const char *fault = plan_line_fault(db, detail ? detail : "");
		const char *allowed = fault ? plan_allowed(id) : NULL;
		if (fault && !allowed)
			faults++;
		if (used < cap)
			used += (size_t)snprintf(report + used, cap - used, "  %-28s %s%s%s%s%s\n",
			                         stmt_name(id), detail, fault ? ": " : "",
			                         fault ? fault : "", allowed ? ", allowed: " : "",
			                         allowed ? allowed : "");
	}
	sqlite3_finalize(s);
	return faults;
}

static void plans_check_all(void)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	static char report[65536];
	report[0] = '\0';
	int faults = 0;
	for (int id = 0; id < S_COUNT; id++)
		faults += plan_check(db, (store_stmt_id)id, report, sizeof report);
	sqlite3_close(db);
	printf("the plans:\n%s", report);
	fflush(stdout);
	if (faults)
		fail_msg("%d plan lines scan a table or sort (listed above): add an index or "
		         "rewrite the query (docs/store-schema.md)", faults);
}

static void test_plans(void **state)
{
	(void)state;
	store *st = open_store();
	populate(st, 200);
	exercise_all(st);
	plans_check_all();
	store_close(st);
}

/* ---- the scale check ---- */

/* The VM steps and full-scan steps statement id took since the last call
 * (this thread's cached statement: the one the store function ran). */
static void stmt_counts(store *st, store_stmt_id id, int *vm_steps, int *fullscan_steps)
{
	db_stmt *s;
	assert_ok(store_stmt(st, id, store_stmt_sql(id), &s));
	sqlite3_stmt *raw = db_sqlite_stmt(s);
	*vm_steps = sqlite3_stmt_status(raw, SQLITE_STMTSTATUS_VM_STEP, 1);
	*fullscan_steps = sqlite3_stmt_status(raw, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
	store_stmt_done(s);
}

enum {
	M_LIST,
	M_DELETION_DUE,
	M_ROTATION_DUE,
	M_MATERIAL,
	M_GRANTS_LIVE,
	M_RESIDENT,
	M_RESIDENT_LAST,
	M_UNDER_KEK,
	M_COUNT
};
static const char *const measure_names[M_COUNT] = {
	"ListKeys, a page of 100 deep in the keys",
	"keys due for deletion, a page of 100",
	"keys due for rotation, a page of 100",
	"a wrapped version's material",
	"a grantee's live grants on one key",
	"resident versions, a page of 100",
	"resident versions, the last page",
	"versions under a KEK, the last 50",
};
static const store_stmt_id measure_stmts[M_COUNT] = {
	S_KEY_LIST, S_KEY_IDS_DELETION_DUE, S_KEY_IDS_ROTATION_DUE, S_VERSION_MATERIAL_GET,
	S_GRANTS_LIVE, S_VERSIONS_RESIDENT, S_VERSIONS_RESIDENT, S_VERSIONS_UNDER_KEK,
};

#define PAGE 100
/* The rows each returns: a page, one row, the last resident keys (n_keys -
 * 8 and n_keys, the last of the due block), the last 50 wrapped. */
static const size_t measure_rows[M_COUNT] = { PAGE, PAGE, PAGE, 1, 1, PAGE, 2, 50 };

/* Runs measure m on a store of n_keys keys and returns its VM steps; fails
 * if it stepped through a full scan or returned less than a page. */
static int measure(store *st, int m, unsigned n_keys)
{
	int vm, full;
	size_t n = 0;
	static store_key rows[PAGE];
	static char ids[PAGE][KMS_KEYID_TEXT_SIZE];
	static store_version_row vrows[PAGE];
	static store_version_ref refs[PAGE];
	store_material mat;
	/* Deep: the page starts 294 keys before the end of the first block
	 * (n_keys - 294 is 6 modulo 10, so the page holds the same kinds of
	 * key at every size, and 200 of them follow in the block). */
	const char *deep = id_of(n_keys - 294);
	store_grant *grants = NULL;

	stmt_counts(st, measure_stmts[m], &vm, &full);
	switch (m) {
	case M_LIST:
		assert_ok(store_key_list(st, deep, PAGE, rows, &n));
		break;
	case M_DELETION_DUE:
		assert_ok(store_key_ids(st, STORE_KEYS_DELETION_DUE, NOW, PAGE, ids, &n));
		break;
	case M_ROTATION_DUE:
		assert_ok(store_key_ids(st, STORE_KEYS_ROTATION_DUE, NOW, PAGE, ids, &n));
		break;
	case M_MATERIAL:
		assert_ok(store_version_material_get(st, id_of(n_keys - 5), 1, &mat));
		n = 1;
		break;
	case M_GRANTS_LIVE:
		assert_ok(store_grants_live(st, "payments-svc", id_of(n_keys - 3), &grants, &n));
		free(grants);
		break;
	case M_RESIDENT:
		assert_ok(store_versions_resident(st, deep, 1, PAGE, vrows, &n));
		break;
	case M_RESIDENT_LAST:
		/* Near the end of the due block; past it lie the wrapped keys. */
		assert_ok(store_versions_resident(st, id_of(n_keys - 10), 1, PAGE, vrows, &n));
		break;
	case M_UNDER_KEK:
		/* The last 50 wrapped keys: after key n_keys - 505 (wrapped). */
		assert_ok(store_versions_under_kek(st, 1, id_of(n_keys - 505), 1, PAGE, refs, &n));
		break;
	}
	stmt_counts(st, measure_stmts[m], &vm, &full);
	if (n != measure_rows[m])
		fail_msg("%s at %u keys: %zu rows, want %zu", measure_names[m], n_keys, n,
		         measure_rows[m]);
	if (full != 0)
		fail_msg("%s at %u keys: %d full-scan steps", measure_names[m], n_keys, full);
	return vm;
}

static void measure_all(unsigned n_keys, int steps[M_COUNT])
{
	store *st = open_store();
	populate(st, n_keys);
	for (int m = 0; m < M_COUNT; m++)
		steps[m] = measure(st, m, n_keys);
	store_close(st);
	assert_int_equal(teardown(NULL), 0);
	assert_int_equal(setup(NULL), 0);
}

/* Within this many VM steps: the same program over the same rows takes the
 * same steps; a B-tree one level deeper costs no extra step. */
#define STEPS_SLACK 4

static void test_scale(void **state)
{
	(void)state;
	int small[M_COUNT], large[M_COUNT];
	measure_all(1000, small);
	measure_all(50000, large);
	for (int m = 0; m < M_COUNT; m++)
		print_message("%-42s VM steps: %6d at 1,000 keys, %6d at 50,000\n", measure_names[m],
		              small[m], large[m]);
	for (int m = 0; m < M_COUNT; m++)
		if (abs(large[m] - small[m]) > STEPS_SLACK)
			fail_msg("%s: %d VM steps at 50,000 keys, %d at 1,000: it grows with the "
			         "keys (a scan or a sort)", measure_names[m], large[m], small[m]);
}

/* ---- the migration from schema 3 ---- */

static int64_t one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* A schema 3 database, made by the released migrations with a key due for
 * deletion, one due for rotation and a live grant, migrates to 4: the
 * rebuilt indexes hold them, the due queries and the grant lookup find
 * them through those, and the plans seek. */
static void test_migration_from_3(void **state)
{
	(void)state;
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	for (int v = 0; v < 3; v++)
		assert_int_equal(sqlite3_exec(db, store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK);
	char sql[2048];
	snprintf(sql, sizeof sql,
	         "INSERT INTO keys (id, spec, usage, state, primary_version, created_at, "
	         "region, lifecycle, deletion_date, rotation_period_days, next_rotation_at) VALUES "
	         "('%s', 1, 1, 3, 1, 1, 'in-test-1', 'ready', 100, 0, 0),"
	         "('%s', 1, 1, 1, 1, 1, 'in-test-1', 'ready', 0, 30, 100),"
	         "('%s', 1, 1, 2, 1, 1, 'in-test-1', 'ready', 0, 30, 100);"
	         "INSERT INTO principals VALUES ('payments-svc', 2, '', 'enabled', 1, 1);"
	         "INSERT INTO grants (id, key_id, grantee, operations, context, creator, state, "
	         "created_at) VALUES ('%s', '%s', 'payments-svc', 'encrypt', x'0000', 'alice', "
	         "'live', 1);"
	         "PRAGMA user_version = 3;",
	         id_of(10), id_of(12), id_of(13), authz_id_n("GR", 1), id_of(12));
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	bool created = true;
	store *st;
	assert_ok(store_open(dir, &st, &created));
	assert_false(created);
	char ids[4][KMS_KEYID_TEXT_SIZE];
	size_t n;
	assert_ok(store_key_ids(st, STORE_KEYS_DELETION_DUE, NOW, 4, ids, &n));
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], id_of(10));
	/* The disabled key (13) is not due, though its date passed. */
	assert_ok(store_key_ids(st, STORE_KEYS_ROTATION_DUE, NOW, 4, ids, &n));
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], id_of(12));
	store_grant *grants;
	assert_ok(store_grants_live(st, "payments-svc", id_of(12), &grants, &n));
	assert_int_equal(n, 1);
	free(grants);
	store_close(st);

	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(one_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
	                             "name IN ('keys_deletion_due', 'keys_rotation_due', "
	                             "'grants_live', 'access_keys_by_creation', "
	                             "'keys_hsm_resident') AND sql LIKE '% WHERE %'"),
	                 4);
	assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
	                             "name = 'keys_rotation_due' AND sql LIKE '%lifecycle = ''ready''%'"),
	                 1);
	assert_int_equal(one_int(db, "SELECT count(*) FROM keys INDEXED BY keys_rotation_due "
	                             "WHERE rotation_period_days > 0 AND state = 1 "
	                             "AND lifecycle = 'ready' AND next_rotation_at > 0"),
	                 1);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_3, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
