/*
 * store_schema_pg.h: the store's schema on PostgreSQL (docs/store-schema.md,
 * "PostgreSQL"; docs/scale-out.md): the same tables, columns, constraints,
 * indexes and rules as the SQLite schema of the same version
 * (STORE_SCHEMA_VERSION), written in PostgreSQL's dialect.
 *
 * The version is the one row of table schema_version (SQLite's
 * PRAGMA user_version). A step is run whole in one transaction; it writes
 * the new version itself. A rule a trigger keeps is refused with SQLSTATE
 * STORE_PG_RULE_SQLSTATE and SQLite's message text, the trigger's name as
 * the error's constraint name.
 */
#ifndef KMS_STORE_SCHEMA_PG_H
#define KMS_STORE_SCHEMA_PG_H

/* The SQLSTATE of every rule a trigger refuses (class KM: the store's own). */
#define STORE_PG_RULE_SQLSTATE "KM001"

/* The SQL of the step that takes a PostgreSQL database from schema version
 * `from` (0: an empty database) to the next version there is a step to,
 * or NULL when there is none from `from`. The steps: 0 -> 7 (no PostgreSQL
 * database was made at an earlier version), then 7 -> 8. */
const char *store_pg_migration_sql(int from);

#endif
