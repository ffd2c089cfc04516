/*
 * fuzz_grant_row: a grant as the store reads it back (kms/store/
 * store_grants.c, grant_read through store_grant_get): the stored
 * operation list and the stored context encoding, from a row a damaged or
 * altered database may hold.
 *
 * The target opens a real store in a throw-away directory, and beside it a
 * second SQLite connection with ignore_check_constraints on, through which
 * each input writes one grant row the schema's CHECKs would refuse as well
 * as any it would take; then store_grant_get reads it.
 *
 * Input: a state byte (live, retired, revoked, or the text that follows),
 * a u8 length and the operation list's bytes, a u16 BE length and the
 * context's bytes.
 *
 * Invariants:
 *   - it returns KMS_OK or KMS_INTERNAL ("a grant row does not fit its
 *     type"), and zeroes the grant unless KMS_OK;
 *   - KMS_OK exactly when an independent check says the row is whole: the
 *     list is 1..16 names of 1..48 bytes of [a-z0-9_], strictly ascending,
 *     joined by ','; the context 2..4096 bytes of a canonical encoding;
 *     the state one of the three;
 *   - what it returns is the row: the list joined again by
 *     store_grant_ops_join is the same text, store_grant_has_op names each
 *     of its operations and nothing else, the context re-encodes to the
 *     same bytes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/context.h"
#include "common/error.h"
#include "kms/store/store.h"
#include "tests/support/fuzz.h"
#include "tests/support/store_test.h"

#define GRANT_ID "GRAAAAAAAAAAAAAAAAAAAA"

static char dir[STORE_TEST_DIR_SIZE];
static char db_path[STORE_TEST_DB_SIZE];
static store *st;
static sqlite3 *raw;

static void cleanup(void)
{
	sqlite3_close(raw);
	store_close(st);
	store_test_dir_remove(dir);
}

static void setup(void)
{
	if (st)
		return;
	store_test_dir_make("fuzz-grant", dir, db_path);
	st = store_test_open(dir);
	FUZZ_CHECK(sqlite3_open(db_path, &raw) == SQLITE_OK);
	FUZZ_CHECK(sqlite3_exec(raw, "PRAGMA ignore_check_constraints = ON;"
	                             "PRAGMA foreign_keys = OFF;"
	                             "PRAGMA synchronous = OFF;", NULL, NULL, NULL) == SQLITE_OK);
	atexit(cleanup);
}

static void put_row(const char *state, size_t state_len, const uint8_t *ops, size_t ops_len,
                    const uint8_t *ctx, size_t ctx_len)
{
	sqlite3_stmt *s;
	FUZZ_CHECK(sqlite3_exec(raw, "DELETE FROM grants", NULL, NULL, NULL) == SQLITE_OK);
	FUZZ_CHECK(sqlite3_prepare_v2(raw,
	                              "INSERT INTO grants (id, key_id, grantee, operations, "
	                              "context, creator, state, created_at) VALUES (?1, "
	                              "'k-00000000000000000000000000000001', 'app', ?2, ?3, "
	                              "'admin', ?4, 1700000000)",
	                              -1, &s, NULL) == SQLITE_OK);
	sqlite3_bind_text(s, 1, GRANT_ID, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, (const char *)ops, (int)ops_len, SQLITE_STATIC);
	if (ctx_len)
		sqlite3_bind_blob(s, 3, ctx, (int)ctx_len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(s, 3, 0);
	sqlite3_bind_text(s, 4, state, (int)state_len, SQLITE_STATIC);
	FUZZ_CHECK(sqlite3_step(s) == SQLITE_DONE);
	sqlite3_finalize(s);
}

/* ---- the oracle ---- */

static bool name_ok(const uint8_t *p, size_t len)
{
	if (len < 1 || len > STORE_GRANT_OP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			return false;
	return true;
}

/* Names split at ',' into names[] (pointers into a copy). */
static size_t split(char *text, char *names[STORE_GRANT_OPS_MAX + 1])
{
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(text, ",", &save); tok && n <= STORE_GRANT_OPS_MAX;
	     tok = strtok_r(NULL, ",", &save))
		names[n++] = tok;
	return n;
}

static bool oracle_ops(const uint8_t *ops, size_t len)
{
	if (len == 0 || len > STORE_GRANT_OPS_TEXT_MAX)
		return false;
	size_t start = 0, count = 0;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && ops[i] != ',')
			continue;
		const uint8_t *name = ops + start;
		size_t name_len = i - start;
		if (!name_ok(name, name_len) || ++count > STORE_GRANT_OPS_MAX)
			return false;
		if (prev) {
			/* Strictly ascending as strcmp orders them. */
			size_t m = prev_len < name_len ? prev_len : name_len;
			int c = memcmp(prev, name, m);
			if (c > 0 || (c == 0 && prev_len >= name_len))
				return false;
		}
		prev = name;
		prev_len = name_len;
		start = i + 1;
	}
	return true;
}

static bool oracle_context(const uint8_t *ctx, size_t len)
{
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n;
	return len >= KMS_CONTEXT_ENCODED_EMPTY_LEN && len <= STORE_GRANT_CONTEXT_MAX &&
	       context_decode(ctx, len, pairs, &n) == KMS_OK;
}

/* ---- the checks of a grant read back ---- */

static void check_grant(const store_grant *g, const uint8_t *ops, size_t ops_len,
                        const uint8_t *ctx, size_t ctx_len)
{
	static char copy[STORE_GRANT_OPS_TEXT_MAX + 1];
	char joined[STORE_GRANT_OPS_TEXT_MAX + 1];
	char *names[STORE_GRANT_OPS_MAX + 1];
	FUZZ_CHECK(strlen(g->operations) == ops_len && memcmp(g->operations, ops, ops_len) == 0);
	memcpy(copy, g->operations, ops_len + 1);
	size_t n = split(copy, names);
	FUZZ_CHECK(n >= 1 && n <= STORE_GRANT_OPS_MAX);
	FUZZ_CHECK(store_grant_ops_join((const char *const *)names, n, joined) == KMS_OK);
	FUZZ_CHECK(strcmp(joined, g->operations) == 0);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(store_grant_has_op(g, names[i]));
	FUZZ_CHECK(!store_grant_has_op(g, "zz_not_granted") && !store_grant_has_op(g, ""));

	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n_pairs;
	static uint8_t again[STORE_GRANT_CONTEXT_MAX];
	size_t again_len;
	FUZZ_CHECK(g->context_len == ctx_len && memcmp(g->context, ctx, ctx_len) == 0);
	FUZZ_CHECK(context_decode(g->context, g->context_len, pairs, &n_pairs) == KMS_OK);
	FUZZ_CHECK(context_encode(pairs, n_pairs, again, sizeof again, &again_len) == KMS_OK);
	FUZZ_CHECK(again_len == ctx_len && memcmp(again, ctx, ctx_len) == 0);
	FUZZ_CHECK(g->state == GRANT_STATE_LIVE || g->state == GRANT_STATE_RETIRED ||
	           g->state == GRANT_STATE_REVOKED);
	FUZZ_CHECK(strcmp(g->id, GRANT_ID) == 0 && strcmp(g->grantee, "app") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const states[] = { "live", "retired", "revoked" };
	if (size < 4)
		return 0;
	setup();
	const char *state;
	size_t state_len;
	size_t at = 1;
	uint8_t pick = data[0];
	if (pick % 4 < 3) {
		state = states[pick % 4];
		state_len = strlen(state);
	} else {
		state_len = data[at] % 16u < size - at - 1 ? data[at] % 16u : size - at - 1;
		state = (const char *)data + at + 1;
		at += 1 + state_len;
	}
	if (at >= size)
		return 0;
	size_t ops_len = data[at] < size - at - 1 ? data[at] : size - at - 1;
	const uint8_t *ops = data + at + 1;
	at += 1 + ops_len;
	if (size - at < 2)
		return 0;
	size_t ctx_len = (size_t)data[at] << 8 | data[at + 1];
	at += 2;
	if (ctx_len > size - at)
		ctx_len = size - at;
	const uint8_t *ctx = data + at;

	put_row(state, state_len, ops, ops_len, ctx, ctx_len);
	store_grant g;
	kms_status s = store_grant_get(st, GRANT_ID, &g);
	bool state_ok = false;
	for (size_t i = 0; i < 3; i++)
		state_ok |= state_len == strlen(states[i]) && !memcmp(state, states[i], state_len);
	bool whole = state_ok && oracle_ops(ops, ops_len) && oracle_context(ctx, ctx_len);
	FUZZ_CHECK(s == KMS_OK || s == KMS_INTERNAL);
	FUZZ_CHECK((s == KMS_OK) == whole);
	if (s == KMS_OK) {
		check_grant(&g, ops, ops_len, ctx, ctx_len);
	} else {
		static const store_grant zero;
		FUZZ_CHECK(memcmp(&g, &zero, sizeof g) == 0);
	}
	kms_error_clear();
	return 0;
}
