/*
 * store_exercise.h: for the store's tests, on SQLite (test_store_plans) and
 * PostgreSQL (test_store_pg) alike: a database with rows of every kind, and
 * a call of every store function, so that every statement is prepared and
 * run. Failures are cmocka failures.
 */
#ifndef KMS_TESTS_STORE_EXERCISE_H
#define KMS_TESTS_STORE_EXERCISE_H

#include <stdbool.h>

#include "kms/store/store.h"
#include "kms/store/store_internal.h"

/* The clock of store_ex_populate's rows: keys due for deletion or rotation
 * are due at STORE_EX_NOW. */
#define STORE_EX_NOW ((int64_t)1000)

/* Key n's id (1..n_keys of store_ex_populate). Ids sort in three blocks:
 * keys 1..n with n % 10 not 0, 2 or 5, then the due ones (0: deletion due,
 * 2: rotation due), then the wrapped ones (5). */
const char *store_ex_id_of(unsigned n);

/* An authz id (principal access key "AK", grant "GR") numbered n. */
const char *store_ex_authz_id(const char *prefix, unsigned n);

/* A statement's enum name ("S_KEY_GET"). */
const char *store_ex_stmt_name(store_stmt_id id);

/* Keys 1..n_keys (n % 10: 0 deletion due, 1 deletion later, 2 rotation
 * due, 3 disabled, 4 rotation later, 5 wrapped under KEK 1, the rest
 * plain), KEK 1 made current; in one transaction. */
void store_ex_populate(store *st, unsigned n_keys);

/* After store_ex_populate(st, n >= 10): calls every store function once;
 * fails naming any statement never prepared in this process for which
 * unused(id) is false. */
void store_ex_all(store *st, bool (*unused)(store_stmt_id id));

#endif
