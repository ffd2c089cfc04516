/*
 * The replay table (kms/authz/authz_replay.h) on its own: bounds refused
 * at open, an entry's life (max(timestamp, now) + window, inclusive), ids
 * per access key, a flood of distinct ids against the per-key and the
 * total bound (refused, never evicted, memory reserved once), the sweep at
 * most once per clock second, and the default bounds' memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kms/authz/authz_replay.h"

#define W 300
#define T0 1767225600
#define KEY_A "AKAAAAAAAAAAAAAAAAAAAA"
#define KEY_B "AKBBBBBBBBBBBBBBBBBBBB"

static void bad_bounds_refused(void **state)
{
	(void)state;
	authz_replay *r = (authz_replay *)1;
	assert_int_equal(authz_replay_open(0, 1, 1, W, &r), KMS_INVALID_ARGUMENT);
	assert_null(r);
	assert_int_equal(authz_replay_open(8, 9, 1, W, &r), KMS_INVALID_ARGUMENT);
	assert_int_equal(authz_replay_open(8, 8, 9, W, &r), KMS_INVALID_ARGUMENT);
	assert_int_equal(authz_replay_open(8, 8, 8, 0, &r), KMS_INVALID_ARGUMENT);
	assert_int_equal(authz_replay_open(AUTHZ_REPLAY_ENTRIES_MAX + 1u, 1, 1, W, &r),
	                 KMS_INVALID_ARGUMENT);
	assert_null(r);
}

static void entry_life(void **state)
{
	(void)state;
	authz_replay *r;
	assert_int_equal(authz_replay_open(16, 16, 4, W, &r), KMS_OK);
	assert_int_equal(authz_replay_check(r, KEY_A, "x", T0, T0), AUTHZ_REPLAY_FRESH);
	assert_int_equal(authz_replay_check(r, KEY_A, "x", T0, T0), AUTHZ_REPLAY_SEEN);
	assert_int_equal(authz_replay_check(r, KEY_B, "x", T0, T0), AUTHZ_REPLAY_FRESH);
	assert_int_equal(authz_replay_check(r, KEY_A, "y", T0, T0), AUTHZ_REPLAY_FRESH);
	/* Another timestamp does not make it another request. */
	assert_int_equal(authz_replay_check(r, KEY_A, "x", T0 + 5, T0 + 5), AUTHZ_REPLAY_SEEN);
	assert_int_equal(authz_replay_check(r, KEY_A, "x", T0, T0 + W), AUTHZ_REPLAY_SEEN);
	assert_int_equal(authz_replay_check(r, KEY_A, "x", T0, T0 + W + 1), AUTHZ_REPLAY_FRESH);
	/* Seen with a timestamp 300 s behind: kept until seen + window. */
	assert_int_equal(authz_replay_check(r, KEY_A, "old", T0 - W, T0), AUTHZ_REPLAY_FRESH);
	assert_int_equal(authz_replay_check(r, KEY_A, "old", T0 - W, T0 + W), AUTHZ_REPLAY_SEEN);
	/* Ids a caller must never pass are refused, closed. */
	assert_int_equal(authz_replay_check(r, "AKSHORT", "z", T0, T0), AUTHZ_REPLAY_FULL);
	assert_int_equal(authz_replay_check(r, KEY_A, "", T0, T0), AUTHZ_REPLAY_FULL);
	char longid[80];
	memset(longid, 'a', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	assert_int_equal(authz_replay_check(r, KEY_A, longid, T0, T0), AUTHZ_REPLAY_FULL);
	authz_replay_close(r);
}

#define ENTRIES 1024
#define PER_KEY 256
#define FLOOD 10000

static void flood_is_bounded(void **state)
{
	(void)state;
	authz_replay *r;
	authz_replay_stats s0, s;
	char key[AUTHZ_ID_LEN + 1], rid[32];
	size_t fresh = 0;

	assert_int_equal(authz_replay_open(ENTRIES, PER_KEY, 8, W, &r), KMS_OK);
	authz_replay_stats_get(r, &s0);
	for (int i = 0; i < FLOOD; i++) {
		snprintf(rid, sizeof rid, "f-%d", i);
		authz_replay_result res = authz_replay_check(r, KEY_A, rid, T0, T0 + i % 2);
		if (res == AUTHZ_REPLAY_FRESH)
			fresh++;
		else
			assert_int_equal(res, AUTHZ_REPLAY_FULL);
	}
	assert_int_equal(fresh, PER_KEY);
	authz_replay_stats_get(r, &s);
	assert_int_equal(s.entries, PER_KEY);
	assert_int_equal(s.bytes_reserved, s0.bytes_reserved);
	/* Nothing accepted was forgotten. */
	for (int i = 0; i < PER_KEY; i++) {
		snprintf(rid, sizeof rid, "f-%d", i);
		assert_int_equal(authz_replay_check(r, KEY_A, rid, T0, T0 + 1), AUTHZ_REPLAY_SEEN);
	}

	/* Three more keys fill the table; a fifth finds no room at all. */
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof key, "AKKEY%c%s", 'C' + k, "AAAAAAAAAAAAAAAA");
		for (int i = 0; i < PER_KEY; i++) {
			snprintf(rid, sizeof rid, "k-%d", i);
			assert_int_equal(authz_replay_check(r, key, rid, T0, T0 + 1),
			                 AUTHZ_REPLAY_FRESH);
		}
	}
	assert_int_equal(authz_replay_check(r, KEY_B, "b", T0, T0 + 1), AUTHZ_REPLAY_FULL);
	authz_replay_stats_get(r, &s);
	assert_int_equal(s.entries, ENTRIES);
	assert_int_equal(s.keys, 4);

	/* At T0 + W + 1 the half of A's entries seen at T0 expired (the rest
	 * live until then, inclusive). They go as a chain is walked or by a
	 * sweep, whichever comes first (the table's hash key is random), so
	 * at most those go: B finds room, and no live entry is forgotten. */
	assert_int_equal(authz_replay_check(r, KEY_B, "b", T0 + W + 1, T0 + W + 1),
	                 AUTHZ_REPLAY_FRESH);
	authz_replay_stats_get(r, &s);
	assert_true(s.entries >= ENTRIES - PER_KEY / 2 + 1 && s.entries <= ENTRIES);
	assert_int_equal(s.keys, 5);
	for (int i = 1; i < PER_KEY; i += 2) {
		snprintf(rid, sizeof rid, "f-%d", i);
		assert_int_equal(authz_replay_check(r, KEY_A, rid, T0 + W + 1, T0 + W + 1),
		                 AUTHZ_REPLAY_SEEN);
	}
	authz_replay_close(r);
}

/* A sweep runs at most once per clock second, even when it frees nothing. */
static void sweep_at_most_once_a_second(void **state)
{
	(void)state;
	authz_replay *r;
	char rid[32];
	assert_int_equal(authz_replay_open(4, 4, 2, W, &r), KMS_OK);
	for (int i = 0; i < 4; i++) {
		snprintf(rid, sizeof rid, "s-%d", i);
		/* Entry i expires at T0 + i + W. */
		assert_int_equal(authz_replay_check(r, KEY_A, rid, T0 + i, T0 + i),
		                 AUTHZ_REPLAY_FRESH);
	}
	/* At T0+W+1 entry 0 expired: this sweep frees it. */
	assert_int_equal(authz_replay_check(r, KEY_A, "n-1", T0 + W + 1, T0 + W + 1),
	                 AUTHZ_REPLAY_FRESH);
	/* Full again; the same second: no second sweep. */
	assert_int_equal(authz_replay_check(r, KEY_A, "n-2", T0 + W + 1, T0 + W + 1),
	                 AUTHZ_REPLAY_FULL);
	/* The next second frees entry 1 (expired at T0+1+W). */
	assert_int_equal(authz_replay_check(r, KEY_A, "n-2", T0 + W + 2, T0 + W + 2),
	                 AUTHZ_REPLAY_FRESH);
	authz_replay_close(r);
}

static void default_bounds_memory(void **state)
{
	(void)state;
	authz_replay *r;
	authz_replay_stats s;
	assert_int_equal(authz_replay_open(AUTHZ_REPLAY_ENTRIES_DEFAULT,
	                                   AUTHZ_REPLAY_PER_KEY_DEFAULT,
	                                   AUTHZ_REPLAY_KEYS_DEFAULT, W, &r),
	                 KMS_OK);
	authz_replay_stats_get(r, &s);
	/* 32 bytes an entry and 4 a bucket, 32 a key and 4 its bucket. */
	size_t want = (size_t)AUTHZ_REPLAY_ENTRIES_DEFAULT * 36 + AUTHZ_REPLAY_KEYS_DEFAULT * 36;
	assert_true(s.bytes_reserved >= want && s.bytes_reserved < want + 4096);
	printf("replay table at the default bounds: %zu bytes reserved (%u entries, %u per "
	       "key, %u keys)\n", s.bytes_reserved, AUTHZ_REPLAY_ENTRIES_DEFAULT,
	       AUTHZ_REPLAY_PER_KEY_DEFAULT, AUTHZ_REPLAY_KEYS_DEFAULT);
	assert_int_equal(authz_replay_check(r, KEY_A, "d", T0, T0), AUTHZ_REPLAY_FRESH);
	authz_replay_close(r);
}

#define RACERS 4
#define RACE_IDS 2000

typedef struct racer {
	authz_replay *r;
	int fresh[RACE_IDS];
} racer;

static void *race(void *arg)
{
	racer *me = arg;
	char rid[32];
	for (int i = 0; i < RACE_IDS; i++) {
		snprintf(rid, sizeof rid, "race-%d", i);
		me->fresh[i] = authz_replay_check(me->r, KEY_A, rid, T0, T0) == AUTHZ_REPLAY_FRESH;
	}
	return NULL;
}

/* Workers presenting the same ids at once: each id is accepted exactly
 * once in all. */
static void concurrent_checks_accept_once(void **state)
{
	(void)state;
	static racer racers[RACERS];
	pthread_t threads[RACERS];
	authz_replay *r;
	assert_int_equal(authz_replay_open(RACE_IDS, RACE_IDS, 1, W, &r), KMS_OK);
	for (int t = 0; t < RACERS; t++) {
		racers[t].r = r;
		assert_int_equal(pthread_create(&threads[t], NULL, race, &racers[t]), 0);
	}
	for (int t = 0; t < RACERS; t++)
		assert_int_equal(pthread_join(threads[t], NULL), 0);
	for (int i = 0; i < RACE_IDS; i++) {
		int accepted = 0;
		for (int t = 0; t < RACERS; t++)
			accepted += racers[t].fresh[i];
		assert_int_equal(accepted, 1);
	}
	authz_replay_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bad_bounds_refused),
		cmocka_unit_test(entry_life),
		cmocka_unit_test(flood_is_bounded),
		cmocka_unit_test(sweep_at_most_once_a_second),
		cmocka_unit_test(default_bounds_memory),
		cmocka_unit_test(concurrent_checks_accept_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
