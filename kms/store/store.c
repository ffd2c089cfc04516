/*
 * store.c: the database file, per-thread connections with their statement
 * caches, transactions and schema migrations. The statements themselves are
 * in store_keys.c, store_aliases.c, store_principals.c, store_grants.c and
 * the other store_*.c; they run through the driver interface db.h. What
 * only SQLite has (opening the file, its settings, the WAL hook and
 * checkpoints, migrations by PRAGMA user_version) is here, through
 * db_sqlite.h.
 */
#include "kms/store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/store/db_pg.h"
#include "kms/store/db_sqlite.h"
#include "kms/store/store_schema_pg.h"
#include "kms/store/store_cache.h"
#include "kms/store/store_internal.h"

typedef struct store_conn {
	store *owner;
	db_conn *db;
	store_read_cache *cache; /* store_cache.h; NULL: reads go to the database */
	/* PostgreSQL: the cache generation this thread's request read
	 * (store_cache_follow), which tags and checks its cache entries; none
	 * known until then and after any write of its own. */
	bool gen_known;
	uint64_t gen;
	/* The companion armed on this thread (store_companion_arm) and what
	 * the transaction under way is: whether it wrote rows, whether it is
	 * an intent, the key the keyring noted for it. */
	store_companion *companion;
	db_stmt *single;      /* the write companion_around wraps */
	const char *last_write; /* the SQL of the last write, for kmsd's log */
	bool tx_wrote;
	bool tx_intent;
	bool noted;
	char noted_key[KMS_KEYID_TEXT_SIZE];
	uint32_t noted_version;
	db_stmt *stmts[S_COUNT];
	struct store_conn *prev;
	struct store_conn *next;
} store_conn;

struct store {
	char path[PATH_MAX];
	/* PostgreSQL instead of SQLite (store_open_with): its URL, and the
	 * password in locked memory for each thread's connection. */
	bool pg;
	char pg_url[1024];
	char owner[STORE_REPLICA_ID_SIZE]; /* intent_owner of this replica's intents */
	char *pg_password;
	db_conn *pg_lock; /* holds the advisory lock of pg_exclusive */
	int lock_fd;             /* data_dir/kms.lock, flock'ed while open */
	pthread_key_t tls;       /* this thread's store_conn */
	pthread_mutex_t lock;    /* guards conns */
	store_conn *conns;       /* every open connection, for store_close */
	_Atomic uint64_t writes; /* commits made visible (the WAL hook): store_cache.h */
	/* The file opened (after store_open): a path that names another file,
	 * or none, fails every use (conn_get). */
	bool identity_known;
	dev_t dev;
	ino_t ino;
};

/*
 * Schema migrations: migrations[i] takes user_version i to i + 1. Never edit
 * a released one; append.
 *
 * The triggers restate two invariants the GCM bound and the tombstones rest
 * on, so a bug above cannot break them quietly: a version's reservation
 * count never goes down, and nothing comes back from destroyed.
 */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE keys ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 34 AND substr(id, 1, 2) = 'k-'),"
	"  description TEXT NOT NULL DEFAULT '' CHECK (length(CAST(description AS BLOB)) <= 256),"
	"  spec INTEGER NOT NULL CHECK (spec BETWEEN 1 AND 4),"
	"  usage INTEGER NOT NULL CHECK (usage BETWEEN 1 AND 3),"
	"  state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 4),"
	"  primary_version INTEGER NOT NULL CHECK (primary_version >= 0),"
	"  rotation_period_days INTEGER NOT NULL DEFAULT 0"
	"    CHECK (rotation_period_days BETWEEN 0 AND 3650),"
	"  created_at INTEGER NOT NULL,"
	"  next_rotation_at INTEGER NOT NULL DEFAULT 0,"
	"  deletion_date INTEGER NOT NULL DEFAULT 0,"
	"  region TEXT NOT NULL,"
	"  policy TEXT NOT NULL DEFAULT '' CHECK (length(CAST(policy AS BLOB)) <= 32768),"
	"  lifecycle TEXT NOT NULL"
	"    CHECK (lifecycle IN ('creating', 'ready', 'destroying', 'destroyed'))"
	") STRICT;"
	"CREATE TABLE key_versions ("
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  version INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),"
	"  created_at INTEGER NOT NULL,"
	"  state TEXT NOT NULL CHECK (state IN ('creating', 'active', 'destroyed')),"
	"  encryptions_reserved INTEGER NOT NULL DEFAULT 0 CHECK (encryptions_reserved >= 0),"
	"  PRIMARY KEY (key_id, version)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE aliases ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  created_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX aliases_by_key ON aliases(key_id, name);"
	"CREATE TABLE tags ("
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  k TEXT NOT NULL,"
	"  v TEXT NOT NULL,"
	"  PRIMARY KEY (key_id, k)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX keys_deletion_due ON keys(deletion_date) WHERE state = 3;"
	"CREATE INDEX keys_rotation_due ON keys(next_rotation_at) WHERE rotation_period_days > 0;"
	"CREATE INDEX keys_in_flight ON keys(lifecycle)"
	"  WHERE lifecycle IN ('creating', 'destroying');"
	"CREATE TRIGGER key_versions_reserved_monotonic"
	"  BEFORE UPDATE OF encryptions_reserved ON key_versions"
	"  WHEN NEW.encryptions_reserved < OLD.encryptions_reserved"
	"  BEGIN SELECT RAISE(ABORT, 'encryptions_reserved must not decrease'); END;"
	"CREATE TRIGGER key_versions_destroyed_final"
	"  BEFORE UPDATE OF state ON key_versions"
	"  WHEN OLD.state = 'destroyed' AND NEW.state <> 'destroyed'"
	"  BEGIN SELECT RAISE(ABORT, 'a destroyed version stays destroyed'); END;"
	"CREATE TRIGGER keys_destroyed_final"
	"  BEFORE UPDATE ON keys"
	"  WHEN OLD.lifecycle = 'destroyed' AND (NEW.lifecycle <> 'destroyed' OR NEW.state <> 4)"
	"  BEGIN SELECT RAISE(ABORT, 'a destroyed key stays destroyed'); END;",
	/* 1 -> 2: principals, access keys, grants (docs/authorization.md). A
	 * deleted principal stays as a tombstone so its name is never reused;
	 * a revoked key and an ended grant stay ended; an access key's secret
	 * (wrapped) and owner never change; at most two active keys per
	 * principal. */
	"CREATE TABLE principals ("
	"  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 63"
	"    AND name NOT GLOB '*[^A-Za-z0-9._-]*'),"
	"  roles INTEGER NOT NULL CHECK (roles BETWEEN 1 AND 7),"
	"  cert_name TEXT NOT NULL DEFAULT '' CHECK (length(CAST(cert_name AS BLOB)) <= 64),"
	"  state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'deleted')),"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE access_keys ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 22 AND substr(id, 1, 2) = 'AK'"
	"    AND substr(id, 3) NOT GLOB '*[^A-Z2-7]*'),"
	"  principal TEXT NOT NULL REFERENCES principals(name),"
	"  wrapped BLOB NOT NULL CHECK (length(wrapped) BETWEEN 1 AND 128),"
	"  state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),"
	"  created_at INTEGER NOT NULL,"
	"  revoked_at INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE INDEX access_keys_by_principal ON access_keys(principal, state);"
	"CREATE TABLE grants ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 22 AND substr(id, 1, 2) = 'GR'"
	"    AND substr(id, 3) NOT GLOB '*[^A-Z2-7]*'),"
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  grantee TEXT NOT NULL REFERENCES principals(name),"
	"  operations TEXT NOT NULL CHECK (length(operations) BETWEEN 1 AND 784"
	"    AND operations NOT GLOB '*[^a-z0-9_,]*'),"
	"  context BLOB NOT NULL CHECK (length(context) BETWEEN 2 AND 4096),"
	"  creator TEXT NOT NULL CHECK (length(creator) BETWEEN 1 AND 63),"
	"  state TEXT NOT NULL CHECK (state IN ('live', 'retired', 'revoked')),"
	"  created_at INTEGER NOT NULL,"
	"  ended_at INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE INDEX grants_by_key ON grants(key_id, id);"
	"CREATE INDEX grants_by_grantee ON grants(grantee, id);"
	"CREATE INDEX grants_live ON grants(grantee, key_id) WHERE state = 'live';"
	"CREATE TRIGGER principals_deleted_final"
	"  BEFORE UPDATE ON principals"
	"  WHEN OLD.state = 'deleted'"
	"  BEGIN SELECT RAISE(ABORT, 'a deleted principal stays deleted'); END;"
	"CREATE TRIGGER principals_kept"
	"  BEFORE DELETE ON principals"
	"  BEGIN SELECT RAISE(ABORT, 'a principal is deleted by its state, never its row'); END;"
	"CREATE TRIGGER access_keys_fixed"
	"  BEFORE UPDATE OF id, principal, wrapped, created_at ON access_keys"
	"  BEGIN SELECT RAISE(ABORT, 'an access key''s id, owner and secret never change'); END;"
	"CREATE TRIGGER access_keys_revoked_final"
	"  BEFORE UPDATE OF state ON access_keys"
	"  WHEN OLD.state = 'revoked'"
	"  BEGIN SELECT RAISE(ABORT, 'a revoked access key stays revoked'); END;"
	"CREATE TRIGGER access_keys_two_active"
	"  BEFORE INSERT ON access_keys"
	"  WHEN NEW.state = 'active' AND (SELECT count(*) FROM access_keys"
	"    WHERE principal = NEW.principal AND state = 'active') >= 2"
	"  BEGIN SELECT RAISE(ABORT, 'at most two active access keys per principal'); END;"
	"CREATE TRIGGER grants_ended_final"
	"  BEFORE UPDATE ON grants"
	"  WHEN OLD.state <> 'live'"
	"  BEGIN SELECT RAISE(ABORT, 'an ended grant stays ended'); END;",
	/* 2 -> 3: the key hierarchy (docs/key-hierarchy.md). KEKs are rows
	 * here and token objects in the HSM; a wrapped key's versions keep
	 * their material here, wrapped under one KEK. Keys made before this
	 * migration are token objects: 'hsm-resident'. The triggers restate
	 * what a bug above must not break quietly: at most one current KEK, a
	 * retired KEK stays retired and wraps nothing, KEK rows are never
	 * deleted; a version's material and its KEK are set together, only
	 * while the version is being created, change only by a re-wrap (to
	 * another KEK) or to nothing when it is destroyed; a destroyed
	 * version has none; material only for wrapped keys, never under a
	 * retired KEK. The indexes serve the background ticks, start-up
	 * reconciliation and the re-wrap job (docs/store-schema.md). */
	"CREATE TABLE keks ("
	"  id INTEGER PRIMARY KEY CHECK (id >= 1),"
	"  hsm_id TEXT NOT NULL UNIQUE CHECK (length(hsm_id) BETWEEN 1 AND 64"
	"    AND hsm_id NOT GLOB '*[^!-~]*'),"
	"  state TEXT NOT NULL CHECK (state IN ('creating', 'current', 'draining', 'retired')),"
	"  created_at INTEGER NOT NULL,"
	"  retired_at INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE UNIQUE INDEX keks_one_current ON keks(state) WHERE state = 'current';"
	"CREATE TRIGGER keks_fixed"
	"  BEFORE UPDATE OF id, hsm_id, created_at ON keks"
	"  BEGIN SELECT RAISE(ABORT, 'a KEK''s id, HSM id and creation time never change'); END;"
	"CREATE TRIGGER keks_retired_final"
	"  BEFORE UPDATE ON keks"
	"  WHEN OLD.state = 'retired'"
	"  BEGIN SELECT RAISE(ABORT, 'a retired KEK stays retired'); END;"
	"CREATE TRIGGER keks_no_return"
	"  BEFORE UPDATE OF state ON keks"
	"  WHEN NEW.state = 'creating' AND OLD.state <> 'creating'"
	"    OR NEW.state = 'current' AND OLD.state NOT IN ('creating', 'current')"
	"  BEGIN SELECT RAISE(ABORT, 'a KEK goes creating -> current -> draining -> retired'); END;"
	"CREATE TRIGGER keks_retire_empty"
	"  BEFORE UPDATE OF state ON keks"
	"  WHEN NEW.state = 'retired' AND EXISTS (SELECT 1 FROM key_versions"
	"    WHERE kek_id = NEW.id AND wrapped IS NOT NULL)"
	"  BEGIN SELECT RAISE(ABORT, 'a KEK that still wraps versions cannot retire'); END;"
	"CREATE TRIGGER keks_kept"
	"  BEFORE DELETE ON keks"
	"  BEGIN SELECT RAISE(ABORT, 'a KEK is retired by its state, never deleted'); END;"
	"ALTER TABLE keys ADD COLUMN protection TEXT NOT NULL DEFAULT 'hsm-resident'"
	"  CHECK (protection IN ('wrapped', 'hsm-resident'));"
	"CREATE TRIGGER keys_protection_fixed"
	"  BEFORE UPDATE OF protection ON keys"
	"  WHEN NEW.protection IS NOT OLD.protection"
	"  BEGIN SELECT RAISE(ABORT, 'a key''s protection is fixed at creation'); END;"
	"CREATE INDEX keys_hsm_resident ON keys(id)"
	"  WHERE protection = 'hsm-resident' AND lifecycle <> 'destroyed';"
	"DROP INDEX keys_in_flight;"
	"CREATE INDEX keys_creating ON keys(id) WHERE lifecycle = 'creating';"
	"CREATE INDEX keys_destroying ON keys(id) WHERE lifecycle = 'destroying';"
	"ALTER TABLE key_versions ADD COLUMN kek_id INTEGER REFERENCES keks(id);"
	"ALTER TABLE key_versions ADD COLUMN wrapped BLOB"
	"  CHECK (wrapped IS NULL OR length(wrapped) BETWEEN 16 AND 2048);"
	"CREATE INDEX key_versions_by_kek ON key_versions(kek_id, key_id, version)"
	"  WHERE wrapped IS NOT NULL;"
	"CREATE INDEX key_versions_creating ON key_versions(key_id, version)"
	"  WHERE state = 'creating';"
	"CREATE TRIGGER key_versions_material_insert"
	"  BEFORE INSERT ON key_versions"
	"  WHEN (NEW.wrapped IS NULL) <> (NEW.kek_id IS NULL)"
	"    OR NEW.wrapped IS NOT NULL AND NEW.state = 'destroyed'"
	"  BEGIN SELECT RAISE(ABORT, 'a version''s material and KEK are set together,"
	" and a destroyed version has none'); END;"
	"CREATE TRIGGER key_versions_material_pair"
	"  BEFORE UPDATE OF wrapped, kek_id ON key_versions"
	"  WHEN (NEW.wrapped IS NULL) <> (NEW.kek_id IS NULL)"
	"  BEGIN SELECT RAISE(ABORT, 'a version''s material and KEK are set together'); END;"
	"CREATE TRIGGER key_versions_material_change"
	"  BEFORE UPDATE OF wrapped, kek_id ON key_versions"
	"  WHEN NEW.wrapped IS NOT NULL AND ("
	"    OLD.wrapped IS NULL AND OLD.state <> 'creating'"
	"    OR OLD.wrapped IS NOT NULL AND (NEW.kek_id IS OLD.kek_id) <> (NEW.wrapped IS OLD.wrapped))"
	"  BEGIN SELECT RAISE(ABORT, 'a version''s material changes only by a re-wrap to another KEK,"
	" or to nothing'); END;"
	"CREATE TRIGGER key_versions_destroyed_bare"
	"  BEFORE UPDATE OF state, wrapped ON key_versions"
	"  WHEN NEW.state = 'destroyed' AND NEW.wrapped IS NOT NULL"
	"  BEGIN SELECT RAISE(ABORT, 'a destroyed version keeps no material'); END;"
	"CREATE TRIGGER key_versions_material_wrapped_only"
	"  BEFORE INSERT ON key_versions"
	"  WHEN NEW.wrapped IS NOT NULL"
	"    AND (SELECT protection FROM keys WHERE id = NEW.key_id) IS NOT 'wrapped'"
	"  BEGIN SELECT RAISE(ABORT, 'only a wrapped key''s versions keep material'); END;"
	"CREATE TRIGGER key_versions_material_set_wrapped_only"
	"  BEFORE UPDATE OF wrapped ON key_versions"
	"  WHEN NEW.wrapped IS NOT NULL AND OLD.wrapped IS NULL"
	"    AND (SELECT protection FROM keys WHERE id = NEW.key_id) IS NOT 'wrapped'"
	"  BEGIN SELECT RAISE(ABORT, 'only a wrapped key''s versions keep material'); END;"
	"CREATE TRIGGER key_versions_wrapped_active_insert"
	"  BEFORE INSERT ON key_versions"
	"  WHEN NEW.state = 'active' AND NEW.wrapped IS NULL"
	"    AND (SELECT protection FROM keys WHERE id = NEW.key_id) = 'wrapped'"
	"  BEGIN SELECT RAISE(ABORT, 'an active version of a wrapped key has material'); END;"
	"CREATE TRIGGER key_versions_wrapped_active"
	"  BEFORE UPDATE OF state ON key_versions"
	"  WHEN NEW.state = 'active' AND NEW.wrapped IS NULL"
	"    AND (SELECT protection FROM keys WHERE id = NEW.key_id) = 'wrapped'"
	"  BEGIN SELECT RAISE(ABORT, 'an active version of a wrapped key has material'); END;"
	"CREATE TRIGGER key_versions_kek_live_insert"
	"  BEFORE INSERT ON key_versions"
	"  WHEN NEW.kek_id IS NOT NULL"
	"    AND (SELECT state FROM keks WHERE id = NEW.kek_id) NOT IN ('current', 'draining')"
	"  BEGIN SELECT RAISE(ABORT, 'material is wrapped only under a current or draining KEK'); END;"
	"CREATE TRIGGER key_versions_kek_live_update"
	"  BEFORE UPDATE OF kek_id ON key_versions"
	"  WHEN NEW.kek_id IS NOT NULL AND NEW.kek_id IS NOT OLD.kek_id"
	"    AND (SELECT state FROM keks WHERE id = NEW.kek_id) NOT IN ('current', 'draining')"
	"  BEGIN SELECT RAISE(ABORT, 'material is wrapped only under a current or draining KEK'); END;",
	/* 3 -> 4: every query on the request path and in the background ticks
	 * seeks an index that holds its rows in the order it returns them
	 * (docs/store-schema.md). The due indexes hold exactly the due
	 * candidates, ordered by due date then id, so a tick's page reads its
	 * rows and stops (the old ones were ordered by date only, so the
	 * queries' ORDER BY id walked every key); the live grants of a
	 * (grantee, key) come in id order without a sort or a walk over the
	 * grantee's other grants; a principal's access keys in creation order;
	 * resident versions paged from the resident keys. */
	"DROP INDEX keys_deletion_due;"
	"CREATE INDEX keys_deletion_due ON keys(deletion_date, id)"
	"  WHERE state = 3 AND lifecycle = 'ready';"
	"DROP INDEX keys_rotation_due;"
	"CREATE INDEX keys_rotation_due ON keys(next_rotation_at, id)"
	"  WHERE rotation_period_days > 0 AND state = 1 AND lifecycle = 'ready';"
	"DROP INDEX grants_live;"
	"CREATE INDEX grants_live ON grants(grantee, key_id, id) WHERE state = 'live';"
	"CREATE INDEX access_keys_by_creation ON access_keys(principal, created_at, id);"
	/* UNIQUE (ids are): then the planner knows each key comes once, and a
	 * page of resident versions needs no sort of each key's versions. */
	"DROP INDEX keys_hsm_resident;"
	"CREATE UNIQUE INDEX keys_hsm_resident ON keys(id)"
	"  WHERE protection = 'hsm-resident' AND lifecycle <> 'destroyed';",
	/* 4 -> 5: signing keys. A version's public key is kept here: a P-256
	 * one beside its wrapped private key (the HSM's PKCS#8 does not carry
	 * it, so this is the only copy), an Ed25519 one as its token pair gave
	 * it, so verifying needs no HSM call.
	 * Written once, in the version's creating transaction; never changed
	 * (a verifier must never see a key's public half move). */
	"ALTER TABLE key_versions ADD COLUMN public_key BLOB"
	"  CHECK (public_key IS NULL OR length(public_key) BETWEEN 32 AND 65);"
	"CREATE TRIGGER key_versions_public_key_fixed"
	"  BEFORE UPDATE OF public_key ON key_versions"
	"  WHEN OLD.public_key IS NOT NULL AND NEW.public_key IS NOT OLD.public_key"
	"  BEGIN SELECT RAISE(ABORT, 'a version''s public key is fixed once set'); END;",
	/* 5 -> 6: consent (docs/consent.md). Consent Managers, never deleted
	 * (a removed one keeps its artefacts as evidence, and its id and kid
	 * are never reused); artefacts stored byte for byte, with what kmsd
	 * read from them, and the SHA-256 of their signed ConsentDetail, unique:
	 * a signed consent is imported once, under one id (its consentId is not
	 * signed); only the status and the use counters ever change,
	 * the status only along PAUSE/RESUME/REVOKE, and REVOKED never. */
	"CREATE TABLE consent_managers ("
	"  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 63),"
	"  kid TEXT NOT NULL UNIQUE CHECK (length(kid) BETWEEN 1 AND 128),"
	"  jwk TEXT NOT NULL CHECK (length(jwk) BETWEEN 2 AND 16384),"
	"  dp_key TEXT NOT NULL,"
	"  principal TEXT NOT NULL DEFAULT '',"
	"  state TEXT NOT NULL CHECK (state IN ('active', 'removed')),"
	"  created_at INTEGER NOT NULL,"
	"  created_by TEXT NOT NULL,"
	"  removed_at INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE TRIGGER consent_managers_fixed"
	"  BEFORE UPDATE OF id, kid, jwk, dp_key, principal, created_at ON consent_managers"
	"  BEGIN SELECT RAISE(ABORT, 'a Consent Manager''s registration never changes'); END;"
	"CREATE TRIGGER consent_managers_removed_final"
	"  BEFORE UPDATE OF state ON consent_managers WHEN OLD.state = 'removed'"
	"  BEGIN SELECT RAISE(ABORT, 'a removed Consent Manager stays removed'); END;"
	"CREATE TRIGGER consent_managers_kept"
	"  BEFORE DELETE ON consent_managers"
	"  BEGIN SELECT RAISE(ABORT, 'Consent Managers are never deleted'); END;"
	"CREATE TABLE consents ("
	"  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),"
	"  manager TEXT NOT NULL REFERENCES consent_managers(id),"
	"  artefact BLOB NOT NULL CHECK (length(artefact) BETWEEN 2 AND 65536),"
	"  digest BLOB NOT NULL CHECK (length(digest) = 32),"
	"  detail_digest BLOB NOT NULL UNIQUE CHECK (length(detail_digest) = 32),"
	"  dp TEXT NOT NULL,"
	"  purpose TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 16),"
	"  onetime INTEGER NOT NULL CHECK (onetime IN (0, 1)),"
	"  consent_start INTEGER NOT NULL,"
	"  consent_expiry INTEGER NOT NULL CHECK (consent_expiry > consent_start),"
	"  data_life_end INTEGER NOT NULL,"
	"  frequency_unit TEXT NOT NULL CHECK (frequency_unit IN ('HOUR', 'DAY', 'MONTH', 'YEAR', 'INF')),"
	"  frequency_value INTEGER NOT NULL CHECK (frequency_value >= 1),"
	"  status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'PAUSED', 'REVOKED')),"
	"  status_at INTEGER NOT NULL,"
	"  status_by TEXT NOT NULL,"
	"  uses INTEGER NOT NULL DEFAULT 0,"
	"  window_start INTEGER NOT NULL DEFAULT 0,"
	"  window_uses INTEGER NOT NULL DEFAULT 0,"
	"  imported_at INTEGER NOT NULL,"
	"  imported_by TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX consents_by_dp ON consents(dp, id);"
	"CREATE INDEX consents_by_manager ON consents(manager, id);"
	"CREATE TRIGGER consents_fixed"
	"  BEFORE UPDATE OF id, manager, artefact, digest, detail_digest, dp, purpose, onetime,"
	"    consent_start,"
	"    consent_expiry, data_life_end, frequency_unit, frequency_value, imported_at,"
	"    imported_by ON consents"
	"  BEGIN SELECT RAISE(ABORT, 'a consent artefact never changes, only its status'); END;"
	"CREATE TRIGGER consents_status_moves"
	"  BEFORE UPDATE OF status ON consents"
	"  WHEN NEW.status IS NOT OLD.status AND (OLD.status = 'REVOKED'"
	"    OR (OLD.status = 'ACTIVE' AND NEW.status NOT IN ('PAUSED', 'REVOKED'))"
	"    OR (OLD.status = 'PAUSED' AND NEW.status NOT IN ('ACTIVE', 'REVOKED')))"
	"  BEGIN SELECT RAISE(ABORT, 'a consent''s status moves only by PAUSE, RESUME and REVOKE'); END;"
	"CREATE TRIGGER consents_kept"
	"  BEFORE DELETE ON consents"
	"  BEGIN SELECT RAISE(ABORT, 'consent artefacts are never deleted'); END;",
	/* 6 -> 7: per-data-principal keys (docs/data-principals.md). A key
	 * made --per-data-principal gives each data principal (`dp`, a
	 * pseudonym) its own AES-256 sub-key per key version (so the version's
	 * GCM budget bounds each sub-key), wrapped under a KEK like a version;
	 * a row's id names it in the unwrapped-key cache. A (key, dp)'s rows
	 * share purpose, creation, retention, notice and hold, and are erased
	 * together. Rows are never deleted: an erased sub-key keeps its row,
	 * without material, as the tombstone that stops any version's sub-key
	 * of that principal from being made again (version 0: a tombstone made
	 * before first use). Retention per purpose is a key's; a sub-key's end
	 * is fixed from it at the principal's first use. The triggers restate:
	 * the flag is fixed, an erased sub-key stays erased and has no
	 * material, an erased principal gets no new row, material and KEK are
	 * set together and change only by a re-wrap, a held sub-key is not
	 * erased, and a KEK that still wraps a sub-key does not retire. */
	"ALTER TABLE keys ADD COLUMN per_data_principal INTEGER NOT NULL DEFAULT 0"
	"  CHECK (per_data_principal IN (0, 1));"
	"CREATE TRIGGER keys_per_data_principal_fixed"
	"  BEFORE UPDATE OF per_data_principal ON keys"
	"  WHEN NEW.per_data_principal IS NOT OLD.per_data_principal"
	"  BEGIN SELECT RAISE(ABORT, 'per_data_principal is fixed at creation'); END;"
	"CREATE TABLE dp_keys ("
	"  id INTEGER PRIMARY KEY CHECK (id >= 1),"
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  dp TEXT NOT NULL CHECK (length(dp) BETWEEN 46 AND 55 AND substr(dp, 1, 3) = 'kp_'"
	"    AND dp NOT GLOB '*[^a-z0-9_]*'),"
	"  version INTEGER NOT NULL CHECK (version BETWEEN 0 AND 4294967295),"
	"  state TEXT NOT NULL CHECK (state IN ('active', 'erased')),"
	"  kek_id INTEGER REFERENCES keks(id),"
	"  wrapped BLOB CHECK (wrapped IS NULL OR length(wrapped) BETWEEN 16 AND 2048),"
	"  purpose TEXT NOT NULL DEFAULT '' CHECK (length(purpose) <= 32"
	"    AND purpose NOT GLOB '*[^A-Za-z0-9._-]*'),"
	"  created_at INTEGER NOT NULL,"
	"  retention_ends_at INTEGER NOT NULL DEFAULT 0,"
	"  notice_at INTEGER NOT NULL DEFAULT 0,"
	"  hold TEXT NOT NULL DEFAULT '' CHECK (length(CAST(hold AS BLOB)) <= 256),"
	"  erased_at INTEGER NOT NULL DEFAULT 0,"
	"  basis TEXT NOT NULL DEFAULT '' CHECK (length(CAST(basis AS BLOB)) <= 256),"
	"  UNIQUE (key_id, dp, version)"
	") STRICT;"
	"CREATE INDEX dp_keys_by_kek ON dp_keys(kek_id, id) WHERE wrapped IS NOT NULL;"
	"CREATE INDEX dp_keys_by_key ON dp_keys(key_id, id);"
	"CREATE INDEX dp_keys_notice_due ON dp_keys(retention_ends_at, id)"
	"  WHERE state = 'active' AND retention_ends_at > 0 AND hold = '' AND notice_at = 0;"
	"CREATE INDEX dp_keys_erasure_due ON dp_keys(retention_ends_at, id)"
	"  WHERE state = 'active' AND retention_ends_at > 0 AND hold = '' AND notice_at > 0;"
	"CREATE TABLE key_retention ("
	"  key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,"
	"  purpose TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 32"
	"    AND purpose NOT GLOB '*[^A-Za-z0-9._-]*'),"
	"  days INTEGER NOT NULL CHECK (days BETWEEN 1 AND 36500),"
	"  PRIMARY KEY (key_id, purpose)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TRIGGER dp_keys_fixed"
	"  BEFORE UPDATE OF id, key_id, dp, version, created_at ON dp_keys"
	"  BEGIN SELECT RAISE(ABORT, 'a sub-key''s id, key, principal, version and creation never"
	" change'); END;"
	"CREATE TRIGGER dp_keys_tombstone"
	"  BEFORE INSERT ON dp_keys"
	"  WHEN EXISTS (SELECT 1 FROM dp_keys WHERE key_id = NEW.key_id AND dp = NEW.dp"
	"    AND state = 'erased')"
	"  BEGIN SELECT RAISE(ABORT, 'an erased data principal gets no sub-key again'); END;"
	"CREATE TRIGGER dp_keys_kept"
	"  BEFORE DELETE ON dp_keys"
	"  WHEN (SELECT lifecycle FROM keys WHERE id = OLD.key_id) <> 'creating'"
	"  BEGIN SELECT RAISE(ABORT, 'a sub-key is erased by its state, never deleted'); END;"
	"CREATE TRIGGER dp_keys_erased_final"
	"  BEFORE UPDATE ON dp_keys"
	"  WHEN OLD.state = 'erased'"
	"  BEGIN SELECT RAISE(ABORT, 'an erased sub-key stays erased'); END;"
	"CREATE TRIGGER dp_keys_material_insert"
	"  BEFORE INSERT ON dp_keys"
	"  WHEN (NEW.wrapped IS NULL) <> (NEW.kek_id IS NULL)"
	"    OR (NEW.wrapped IS NULL) <> (NEW.state = 'erased')"
	"  BEGIN SELECT RAISE(ABORT, 'an active sub-key has material and its KEK, an erased one"
	" neither'); END;"
	"CREATE TRIGGER dp_keys_material_update"
	"  BEFORE UPDATE OF state, wrapped, kek_id ON dp_keys"
	"  WHEN (NEW.wrapped IS NULL) <> (NEW.kek_id IS NULL)"
	"    OR (NEW.wrapped IS NULL) <> (NEW.state = 'erased')"
	"    OR NEW.wrapped IS NOT NULL AND NEW.kek_id IS OLD.kek_id AND NEW.wrapped IS NOT OLD.wrapped"
	"  BEGIN SELECT RAISE(ABORT, 'a sub-key''s material changes only by a re-wrap, or to"
	" nothing when it is erased'); END;"
	"CREATE TRIGGER dp_keys_held"
	"  BEFORE UPDATE OF state ON dp_keys"
	"  WHEN NEW.state = 'erased' AND NEW.hold <> ''"
	"  BEGIN SELECT RAISE(ABORT, 'a sub-key under a legal hold is not erased'); END;"
	"CREATE TRIGGER dp_keys_kek_live_insert"
	"  BEFORE INSERT ON dp_keys"
	"  WHEN NEW.kek_id IS NOT NULL"
	"    AND (SELECT state FROM keks WHERE id = NEW.kek_id) NOT IN ('current', 'draining')"
	"  BEGIN SELECT RAISE(ABORT, 'material is wrapped only under a current or draining KEK'); END;"
	"CREATE TRIGGER dp_keys_kek_live_update"
	"  BEFORE UPDATE OF kek_id ON dp_keys"
	"  WHEN NEW.kek_id IS NOT NULL AND NEW.kek_id IS NOT OLD.kek_id"
	"    AND (SELECT state FROM keks WHERE id = NEW.kek_id) NOT IN ('current', 'draining')"
	"  BEGIN SELECT RAISE(ABORT, 'material is wrapped only under a current or draining KEK'); END;"
	"CREATE TRIGGER keks_retire_empty_dp"
	"  BEFORE UPDATE OF state ON keks"
	"  WHEN NEW.state = 'retired' AND EXISTS (SELECT 1 FROM dp_keys"
	"    WHERE kek_id = NEW.id AND wrapped IS NOT NULL)"
	"  BEGIN SELECT RAISE(ABORT, 'a KEK that still wraps sub-keys cannot retire'); END;",
	/* 7 -> 8: the cache generation (docs/scale-out.md, "Cache coherence").
	 * One row, raised by every change a replica's keyring caches could
	 * hold stale: a visible key's row, an active version's state, an
	 * alias's target or its removal. Intents (lifecycle 'creating') and
	 * reservations (encryptions_reserved) do not raise it: nobody has
	 * cached them, and the data plane's reservations must not serialize
	 * on one row. A new alias names no cached key either. */
	"CREATE TABLE cache_generation ("
	"  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),"
	"  value INTEGER NOT NULL CHECK (value >= 0)"
	") STRICT;"
	"INSERT INTO cache_generation (id, value) VALUES (1, 0);"
	"CREATE TRIGGER keys_generation"
	"  AFTER UPDATE ON keys"
	"  WHEN OLD.lifecycle <> 'creating'"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER key_versions_generation"
	"  AFTER UPDATE OF state ON key_versions"
	"  WHEN OLD.state = 'active'"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER aliases_update_generation"
	"  AFTER UPDATE ON aliases"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER aliases_delete_generation"
	"  AFTER DELETE ON aliases"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	/* Whose intent a CREATING row is (store_replica.c): '' for SQLite's
	 * one kmsd, a replica's id on a shared PostgreSQL store. */
	"ALTER TABLE keys ADD COLUMN intent_owner TEXT NOT NULL DEFAULT ''"
	"  CHECK (length(CAST(intent_owner AS BLOB)) <= 32);"
	"ALTER TABLE key_versions ADD COLUMN intent_owner TEXT NOT NULL DEFAULT ''"
	"  CHECK (length(CAST(intent_owner AS BLOB)) <= 32);"
	/* The CreateKey request that made the key (docs/scale-out.md, "A
	 * retried CreateKey"): SHA-256, in hex, of its principal, request id
	 * and bytes; '' for keys made otherwise. Unique, so that the same
	 * request sent again (to another replica) finds its key instead of
	 * making a second. */
	"ALTER TABLE keys ADD COLUMN request_ref TEXT NOT NULL DEFAULT ''"
	"  CHECK (request_ref = '' OR (length(request_ref) = 64"
	"    AND request_ref NOT GLOB '*[^0-9a-f]*'));"
	"CREATE UNIQUE INDEX keys_by_request ON keys(request_ref) WHERE request_ref <> '';",
	/* 8 -> 9: the fleet's audit log (docs/scale-out.md, "One audit log for
	 * the fleet"). Every replica adds its entries to audit_pending (in the
	 * request's time, before its reply); the one replica holding
	 * audit_lease moves them, in one transaction, to audit_entries, where
	 * each gets the next sequence number: the log's order (replica: which
	 * replica wrote it; not part of the entry). audit_entries
	 * only grows, without gaps; audit_checkpoint is the latest checkpoint
	 * the lease holder signed, and never shrinks. */
	"CREATE TABLE audit_pending ("
	"  id INTEGER PRIMARY KEY CHECK (id >= 1),"
	"  entry BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 65535),"
	"  replica TEXT NOT NULL CHECK (length(CAST(replica AS BLOB)) <= 32)"
	") STRICT;"
	"CREATE TABLE audit_entries ("
	"  seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 0),"
	"  entry BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 65535),"
	"  replica TEXT NOT NULL DEFAULT '' CHECK (length(CAST(replica AS BLOB)) <= 32)"
	") STRICT;"
	"CREATE TRIGGER audit_entries_in_order"
	"  BEFORE INSERT ON audit_entries"
	"  WHEN NEW.seq > 0 AND NOT EXISTS (SELECT 1 FROM audit_entries WHERE seq = NEW.seq - 1)"
	"  BEGIN SELECT RAISE(ABORT, 'an audit entry follows the one before it, without a gap');"
	" END;"
	"CREATE TRIGGER audit_entries_fixed"
	"  BEFORE UPDATE ON audit_entries"
	"  BEGIN SELECT RAISE(ABORT, 'an audit entry never changes'); END;"
	"CREATE TRIGGER audit_entries_kept"
	"  BEFORE DELETE ON audit_entries"
	"  BEGIN SELECT RAISE(ABORT, 'an audit entry is never removed'); END;"
	"CREATE TABLE audit_lease ("
	"  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),"
	"  holder TEXT NOT NULL DEFAULT '' CHECK (length(CAST(holder AS BLOB)) <= 32),"
	"  epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),"
	"  expires_ms INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"INSERT INTO audit_lease (id) VALUES (1);"
	"CREATE TABLE audit_checkpoint ("
	"  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  note BLOB NOT NULL CHECK (length(note) BETWEEN 1 AND 4096)"
	") STRICT;"
	"CREATE TRIGGER audit_checkpoint_grows"
	"  BEFORE UPDATE ON audit_checkpoint"
	"  WHEN NEW.size < OLD.size"
	"  BEGIN SELECT RAISE(ABORT, 'the fleet''s checkpoint never shrinks'); END;",
	/* 9 -> 10: request records (docs/scale-out.md, "Request records"). A
	 * data-plane request that a replica answered leaves its record here,
	 * written in the same transaction as its audit entry: the operation,
	 * the SHA-256 of its fields (Encrypt's plaintext left out) and the
	 * ciphertext blob it made, if any. The same request sent again (a
	 * resend to another replica) is answered from it instead of running
	 * twice. Kept STORE_REQUEST_KEEP_MS, then removed by the lease holder. */
	"CREATE TABLE request_records ("
	"  principal TEXT NOT NULL CHECK (length(CAST(principal AS BLOB)) BETWEEN 1 AND 64),"
	"  request_id TEXT NOT NULL CHECK (length(CAST(request_id AS BLOB)) BETWEEN 1 AND 64),"
	"  op INTEGER NOT NULL CHECK (op >= 1),"
	"  digest BLOB NOT NULL CHECK (length(digest) = 32),"
	"  result BLOB CHECK (result IS NULL OR length(result) BETWEEN 1 AND 8192),"
	"  created_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (principal, request_id)"
	") STRICT;"
	"CREATE INDEX request_records_by_age ON request_records(created_ms);"
	/* The cache generation also rises with every change the store's read
	 * cache could hold stale (store_cache.h): a principal made or changed,
	 * an access key changed (revoked), a grant made or changed. So on
	 * PostgreSQL that cache is used while the generation read at the
	 * request's start holds (docs/scale-out.md, "Cache coherence"). */
	"CREATE TRIGGER principals_insert_generation"
	"  AFTER INSERT ON principals"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER principals_update_generation"
	"  AFTER UPDATE ON principals"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER access_keys_update_generation"
	"  AFTER UPDATE ON access_keys"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER grants_insert_generation"
	"  AFTER INSERT ON grants"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;"
	"CREATE TRIGGER grants_update_generation"
	"  AFTER UPDATE ON grants"
	"  BEGIN UPDATE cache_generation SET value = value + 1; END;",
};
#define MIGRATIONS_COUNT (sizeof migrations / sizeof migrations[0])
_Static_assert(MIGRATIONS_COUNT == STORE_SCHEMA_VERSION,
               "one migration per schema version");

const char *store_migration_sql(int from)
{
	return from >= 0 && from < STORE_SCHEMA_VERSION ? migrations[from] : NULL;
}

const char *key_spec_name(key_spec spec)
{
	switch (spec) {
	case KEY_SPEC_AES_256: return "AES_256";
	case KEY_SPEC_HMAC_SHA256: return "HMAC_SHA256";
	case KEY_SPEC_ED25519: return "ED25519";
	case KEY_SPEC_ECC_P256: return "ECC_P256";
	}
	return "unknown";
}

const char *key_usage_name(key_usage usage)
{
	switch (usage) {
	case KEY_USAGE_ENCRYPT_DECRYPT: return "ENCRYPT_DECRYPT";
	case KEY_USAGE_GENERATE_VERIFY_MAC: return "GENERATE_VERIFY_MAC";
	case KEY_USAGE_SIGN_VERIFY: return "SIGN_VERIFY";
	}
	return "unknown";
}

const char *key_state_name(key_state state)
{
	switch (state) {
	case KEY_STATE_ENABLED: return "ENABLED";
	case KEY_STATE_DISABLED: return "DISABLED";
	case KEY_STATE_PENDING_DELETION: return "PENDING_DELETION";
	case KEY_STATE_DESTROYED: return "DESTROYED";
	}
	return "UNKNOWN_STATE";
}

const char *key_lifecycle_name(key_lifecycle lifecycle)
{
	switch (lifecycle) {
	case KEY_LIFECYCLE_CREATING: return "creating";
	case KEY_LIFECYCLE_READY: return "ready";
	case KEY_LIFECYCLE_DESTROYING: return "destroying";
	case KEY_LIFECYCLE_DESTROYED: return "destroyed";
	}
	return "unknown";
}

const char *key_protection_name(key_protection protection)
{
	switch (protection) {
	case KEY_PROTECTION_HSM_RESIDENT: return "hsm-resident";
	case KEY_PROTECTION_WRAPPED: return "wrapped";
	}
	return "unknown";
}

const char *kek_state_name(kek_state state)
{
	switch (state) {
	case KEK_STATE_CREATING: return "creating";
	case KEK_STATE_CURRENT: return "current";
	case KEK_STATE_DRAINING: return "draining";
	case KEK_STATE_RETIRED: return "retired";
	}
	return "unknown";
}

const char *version_state_name(version_state state)
{
	switch (state) {
	case VERSION_STATE_CREATING: return "creating";
	case VERSION_STATE_ACTIVE: return "active";
	case VERSION_STATE_DESTROYED: return "destroyed";
	}
	return "unknown";
}

/* ---- connections ---- */

static void conn_free(store_conn *c)
{
	for (size_t i = 0; i < S_COUNT; i++)
		db_finalize(c->stmts[i]);
	db_close(c->db);
	store_cache_free(c->cache);
	free(c);
}

/* pthread key destructor: the thread is exiting. */
static void conn_release(void *p)
{
	store_conn *c = p;
	store *st = c->owner;

	pthread_mutex_lock(&st->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		st->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&st->lock);
	conn_free(c);
}

static kms_status conn_exec(sqlite3 *db, const char *sql, const char *what)
{
	char *why = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &why);
	if (rc != SQLITE_OK) {
		kms_status status = KMS_FAIL(rc == SQLITE_BUSY ? KMS_UNAVAILABLE : KMS_INTERNAL,
		                             "store: %s: %s (%s)", what, sqlite3_errstr(rc),
		                             why ? why : "");
		sqlite3_free(why);
		return status;
	}
	return KMS_OK;
}

/* SQLite's WAL hook: called after a commit on this connection is visible
 * to every other one and its write lock released. It counts the commit for
 * the read caches (store_cache.h), then does what SQLite's own hook, which
 * this one replaces, does: a passive checkpoint once the WAL holds
 * STORE_WAL_AUTOCHECKPOINT pages. */
#define STORE_WAL_AUTOCHECKPOINT 1000
static int wal_committed(void *arg, sqlite3 *db, const char *name, int frames)
{
	store *st = arg;
	atomic_fetch_add_explicit(&st->writes, 1, memory_order_release);
	if (frames >= STORE_WAL_AUTOCHECKPOINT)
		(void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

uint64_t store_write_count(store *st)
{
	if (st->pg) { /* store_cache_mine gives no cache while none is known */
		store_conn *c = pthread_getspecific(st->tls);
		return c && c->gen_known ? c->gen : 0;
	}
	return atomic_load_explicit(&st->writes, memory_order_acquire);
}

void store_cache_follow(store *st, uint64_t generation)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (!st->pg || !c)
		return;
	c->gen = generation;
	c->gen_known = true;
}

static kms_status conn_open(store *st, store_conn **out)
{
	kms_status status = KMS_OK;
	store_conn *c = calloc(1, sizeof *c);
	*out = NULL;
	if (!c)
		return KMS_FAIL(KMS_INTERNAL, "store: out of memory opening a connection");
	c->owner = st;

	if (st->pg) {
		db_pg_config pc = { .url = st->pg_url, .password = st->pg_password };
		KMS_GUARD_OUT(status, db_pg_open(&pc, &c->db));
		/* The read cache, tagged with the cache generation this
		 * connection read last (store_cache.h): other replicas commit on
		 * the same database unseen, but every change the cache could hold
		 * raises the generation, and kmsd reads it at each request's
		 * start (keyring_sync), so a change made through any replica is
		 * enforced at the next request. */
		c->cache = store_cache_new(); /* NULL is allowed: no cache */
		goto linked;
	}
	/* The file exists (store_open made it); never follow a symlink to it. */
	int rc = db_sqlite_open(st->path, &c->db);
	if (rc != SQLITE_OK) {
		status = KMS_FAIL(KMS_INTERNAL, "store: open %s: %s", st->path, sqlite3_errstr(rc));
		goto out;
	}
	sqlite3 *db = db_sqlite_handle(c->db);
	sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
	sqlite3_wal_hook(db, wal_committed, st);
	c->cache = store_cache_new(); /* NULL is allowed: no cache */
	/* Defensive: no writes to the schema or shadow tables through SQL,
	 * no functions with side effects from within the schema. */
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	KMS_GUARD_OUT(status, conn_exec(db,
	                                "PRAGMA foreign_keys = ON;"
	                                "PRAGMA synchronous = FULL;"
	                                "PRAGMA secure_delete = ON;",
	                                "connection pragmas"));

linked:
	pthread_mutex_lock(&st->lock);
	c->next = st->conns;
	if (st->conns)
		st->conns->prev = c;
	st->conns = c;
	pthread_mutex_unlock(&st->lock);
	*out = c;
	c = NULL;
out:
	if (c)
		conn_free(c);
	return status;
}

/* Whether st->path still names the file kmsd opened. A store file moved,
 * deleted or copied over while kmsd runs would otherwise be served by the
 * connections already open (they hold the old file) and refused by new
 * ones, and writes to a deleted file are lost at the next start: every use
 * is refused instead, until the file is put back or kmsd restarts. */
static kms_status identity_check(const store *st)
{
	if (!st->identity_known)
		return KMS_OK;
	struct stat now;
	if (lstat(st->path, &now) == 0 && now.st_dev == st->dev && now.st_ino == st->ino)
		return KMS_OK;
	return KMS_FAIL(KMS_UNAVAILABLE, "store: %s was moved, replaced or deleted while kmsd "
	                "ran: nothing was read or changed; put it back or restart kmsd",
	                st->path);
}

/* This thread's connection, opened on first use. */
static kms_status conn_get(store *st, store_conn **out)
{
	KMS_GUARD(identity_check(st));
	store_conn *c = pthread_getspecific(st->tls);
	if (!c) {
		KMS_GUARD(conn_open(st, &c));
		if (pthread_setspecific(st->tls, c) != 0) {
			conn_release(c);
			*out = NULL;
			return KMS_FAIL(KMS_INTERNAL, "store: pthread_setspecific failed");
		}
	}
	*out = c;
	return KMS_OK;
}

store_read_cache *store_cache_mine(store *st)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (!c || db_in_transaction(c->db) || (st->pg && !c->gen_known))
		return NULL;
	return c->cache;
}

/* ---- the companion: an audit entry committed with its change ---- */

static kms_status run_simple(store *st, store_stmt_id id, const char *sql, const char *what);

void store_companion_arm(store *st, store_companion *c)
{
	if (!st->pg)
		return;
	/* Without a connection the entry goes the usual way (no write can
	 * have been made either). */
	store_conn *conn = pthread_getspecific(st->tls);
	if (!conn && c && conn_get(st, &conn) != KMS_OK)
		kms_error_clear();
	if (!conn)
		return;
	conn->companion = c;
	conn->noted = false;
}

void store_companion_key(store *st, const char *key_id, uint32_t key_version)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (!c || !c->companion)
		return;
	snprintf(c->noted_key, sizeof c->noted_key, "%s", key_id);
	c->noted_version = key_version;
	c->noted = true;
}

void store_tx_intent(store *st)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (c)
		c->tx_intent = true;
}

/* The companion's entry into the transaction under way, just before its
 * COMMIT, then the COMMIT itself; the companion hears how it ended. A
 * write after the companion's own is said once in kmsd's log. */
static kms_status companion_commit(store_conn *c)
{
	store *st = c->owner;
	store_companion *comp = c->companion;
	char *entry = NULL;
	size_t len = 0;
	int64_t id = 0;
	kms_status status = comp->build(comp->arg, c->noted ? c->noted_key : NULL,
	                                c->noted_version, &entry, &len);
	bool built = status == KMS_OK;
	if (status == KMS_OK)
		status = store_audit_add(st, entry, len, &id);
	free(entry);
	if (status == KMS_OK)
		status = run_simple(st, S_COMMIT, "COMMIT", "COMMIT");
	if (status != KMS_OK)
		store_rollback(st);
	if (built)
		comp->settled(comp->arg, status == KMS_OK, id);
	if (status == KMS_OK) {
		comp->added = true;
		atomic_fetch_add_explicit(&st->writes, 1, memory_order_release);
	}
	return status;
}

/* Whether the transaction ending now carries the companion's entry. */
static bool companion_due(store_conn *c)
{
	if (!c->companion || !c->tx_wrote || c->tx_intent)
		return false;
	if (!c->companion->added)
		return true;
	kms_log("warn", "request %s: a second transaction changed rows after the one its audit "
	        "entry committed with (%.48s...)",
	        c->companion->request_id ? c->companion->request_id : "",
	        c->last_write ? c->last_write : "");
	return false;
}

/* db_stmt_around for a single write outside a transaction: it begins one
 * and commits it with the entry. A failure of either is the step's, with
 * its message (a serialization failure stays DB_CONFLICT: retried whole). */
static db_rc companion_around(void *arg, bool before, db_rc rc)
{
	store_conn *c = arg;
	store *st = c->owner;
	uint64_t conflicts = db_thread_conflicts();
	kms_status status;
	if (before) {
		status = store_begin(st);
		c->tx_wrote = true;
	} else if (rc != DB_ROW && rc != DB_DONE) {
		store_rollback(st);
		return rc;
	} else {
		status = companion_commit(c);
	}
	if (status == KMS_OK)
		return before ? DB_OK : rc;
	db_stmt_fail_message(c->single, kms_error_message());
	kms_error_clear();
	return db_thread_conflicts() != conflicts ? DB_CONFLICT : DB_ERROR;
}

/* A single write outside a transaction, with a companion armed: it runs in
 * a transaction of its own that carries the entry. */
static void companion_single(store_conn *c, db_stmt *s)
{
	if (!c->companion->added) {
		c->single = s;
		db_stmt_around(s, companion_around, c);
	} else
		(void)companion_due(c); /* says so */
}

/* Whether sql changes rows (the store's statements are written in upper
 * case). */
static bool writes_rows(const char *sql)
{
	return !strncmp(sql, "INSERT", 6) || !strncmp(sql, "UPDATE", 6) ||
	       !strncmp(sql, "DELETE", 6);
}

/* The text each statement id was first prepared with, process-wide: every
 * connection prepares the same text for an id (store_stmt_sql). */
static const char *stmt_sql[S_COUNT];

const char *store_stmt_sql(store_stmt_id id)
{
	return (unsigned)id < S_COUNT ? __atomic_load_n(&stmt_sql[id], __ATOMIC_ACQUIRE) : NULL;
}

static kms_status stmt_sql_record(store_stmt_id id, const char *sql)
{
	const char *expected = NULL;
	if (__atomic_compare_exchange_n(&stmt_sql[id], &expected, sql, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE))
		return KMS_OK;
	KMS_ENSURE(expected == sql || strcmp(expected, sql) == 0, KMS_INTERNAL,
	           "store: statement %d is used with two different SQL texts", (int)id);
	return KMS_OK;
}

kms_status store_stmt(store *st, store_stmt_id id, const char *sql, db_stmt **out)
{
	store_conn *c;
	*out = NULL;
	KMS_ENSURE((unsigned)id < S_COUNT, KMS_INTERNAL, "store: no statement %d", (int)id);
	KMS_GUARD(conn_get(st, &c));
	if (!c->stmts[id]) {
		KMS_GUARD(stmt_sql_record(id, sql));
		if (db_prepare(c->db, sql, &c->stmts[id]) != DB_OK)
			return KMS_FAIL(KMS_INTERNAL, "store: prepare statement %d: %s (%s)", (int)id,
			                db_conn_errstr(c->db), db_conn_errmsg(c->db));
	}
	db_reset(c->stmts[id]);
	/* PostgreSQL: this connection's own change may be one its cache holds;
	 * the next generation read tags the cache again. */
	if (st->pg && writes_rows(sql)) {
		c->gen_known = false;
		c->last_write = sql;
		if (db_in_transaction(c->db))
			c->tx_wrote = true;
		else if (c->companion)
			companion_single(c, c->stmts[id]);
	}
	*out = c->stmts[id];
	return KMS_OK;
}

void store_stmt_done(db_stmt *s)
{
	db_reset(s);
}

db_rc store_bind(db_stmt *s, const char *types, ...)
{
	va_list ap;
	db_rc rc = DB_OK;

	va_start(ap, types);
	for (int i = 0; types[i] != '\0' && rc == DB_OK; i++) {
		if (types[i] == 't')
			rc = db_bind_text(s, i + 1, va_arg(ap, const char *));
		else if (types[i] == 'i')
			rc = db_bind_int64(s, i + 1, va_arg(ap, int64_t));
		else if (types[i] == 'n')
			rc = db_bind_null(s, i + 1);
		else if (types[i] == 'b') {
			const void *bytes = va_arg(ap, const void *);
			size_t len = va_arg(ap, size_t);
			rc = db_bind_blob(s, i + 1, bytes, len);
		}
		else
			rc = DB_ERROR;
	}
	va_end(ap);
	return rc;
}

kms_status store_fail_at(db_stmt *s, db_rc rc, const char *what, const char *id,
                         const char *file, int line)
{
	/* A failed sync at COMMIT: SQLite rolled the transaction back, but its
	 * frames may be whole in the WAL and applied at the next start
	 * (docs/robustness.md, "Known limits"): the change is in doubt. */
	if (rc == DB_IN_DOUBT)
		return kms_error_set_at(KMS_UNAVAILABLE, file, line,
		                        "store: %s%s%s: %s (%s): the disk of the data dir failed to "
		                        "sync; the change may or may not be applied after a restart: "
		                        "fix the disk, restart kmsd and check before retrying", what,
		                        id ? " " : "", id ? id : "", db_errstr(s), db_errmsg(s));
	/* The disk under the data dir failed otherwise (EIO, ENOSPC): SQLite
	 * rolled the statement or transaction back, so nothing was changed;
	 * the request may be retried once the disk is fixed
	 * (docs/robustness.md). */
	if (rc == DB_IOERR)
		return kms_error_set_at(KMS_UNAVAILABLE, file, line,
		                        "store: %s%s%s: %s (%s): nothing was changed; check the disk "
		                        "of the data dir and retry", what, id ? " " : "",
		                        id ? id : "", db_errstr(s), db_errmsg(s));
	kms_status status = rc == DB_CONFLICT ? KMS_UNAVAILABLE : KMS_INTERNAL;
	return kms_error_set_at(status, file, line, "store: %s%s%s: %s (%s)", what,
	                        id ? " " : "", id ? id : "", db_errstr(s), db_errmsg(s));
}

bool store_column_text(db_stmt *s, int col, char *out, size_t cap)
{
	const char *text = db_column_text(s, col);
	size_t len = db_column_bytes(s, col);
	if (cap == 0)
		return false;
	out[0] = '\0';
	if (!text || len >= cap || memchr(text, '\0', len))
		return false;
	memcpy(out, text, len);
	out[len] = '\0';
	return true;
}

/* ---- statement helpers ---- */

/* Makes room for one more element in a malloc'ed array. */
bool store_grow(void **array, size_t *cap, size_t used, size_t elem_size)
{
	if (used < *cap)
		return true;
	size_t next = *cap ? *cap * 2 : 8;
	if (next > SIZE_MAX / elem_size)
		return false;
	void *bigger = realloc(*array, next * elem_size);
	if (!bigger)
		return false;
	*array = bigger;
	*cap = next;
	return true;
}

/* Steps a statement that changes rows; KMS_NOT_FOUND if it changed none
 * and not_found_ok is false. */
kms_status store_step_change(db_stmt *s, const char *what, const char *id,
                             bool not_found_ok)
{
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, what, id);
	else if (!not_found_ok && db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "store: %s %s: no such row", what, id ? id : "");
	store_stmt_done(s);
	return status;
}

kms_status store_bind_check(db_stmt *s, db_rc rc, const char *what, const char *id)
{
	if (rc == DB_OK)
		return KMS_OK;
	kms_status status = store_fail(s, rc, what, id);
	store_stmt_done(s);
	return status;
}

/* Runs a query of one integer column and one row. */
kms_status store_step_count(db_stmt *s, const char *what, const char *id, int64_t *out)
{
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	*out = 0;
	if (rc == DB_ROW)
		*out = db_column_int64(s, 0);
	else
		status = store_fail(s, rc, what, id);
	store_stmt_done(s);
	return status;
}

/* ---- transactions ---- */

static kms_status run_simple(store *st, store_stmt_id id, const char *sql, const char *what)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, id, sql, &s));
	db_rc rc = db_step(s);
	kms_status status = rc == DB_DONE ? KMS_OK : store_fail(s, rc, what, NULL);
	store_stmt_done(s);
	return status;
}

kms_status store_begin(store *st)
{
	/* SERIALIZABLE on PostgreSQL: what SQLite's one writer at a time gives,
	 * with a conflict (DB_CONFLICT) where two transactions would interleave. */
	store_conn *c = pthread_getspecific(st->tls);
	if (c) {
		c->tx_wrote = false;
		c->tx_intent = false;
	}
	if (st->pg)
		return run_simple(st, S_BEGIN_PG, "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN");
	return run_simple(st, S_BEGIN, "BEGIN IMMEDIATE", "BEGIN");
}

kms_status store_begin_read(store *st)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (c) {
		c->tx_wrote = false;
		c->tx_intent = false;
	}
	if (st->pg)
		return run_simple(st, S_BEGIN_READ_PG, "BEGIN ISOLATION LEVEL REPEATABLE READ",
		                  "BEGIN");
	return run_simple(st, S_BEGIN_READ, "BEGIN DEFERRED", "BEGIN");
}

kms_status store_commit(store *st)
{
	store_conn *c = st->pg ? pthread_getspecific(st->tls) : NULL;
	if (c && companion_due(c))
		return companion_commit(c);
	kms_status status = run_simple(st, S_COMMIT, "COMMIT", "COMMIT");
	if (status != KMS_OK)
		store_rollback(st);
	else if (st->pg) /* SQLite's WAL hook counts commits; PostgreSQL has none */
		atomic_fetch_add_explicit(&st->writes, 1, memory_order_release);
	return status;
}

kms_status store_pg_url_check(const char *url)
{
	return db_pg_url_check(url);
}

bool store_is_pg(const store *st)
{
	return st->pg;
}

uint64_t store_thread_conflicts(void)
{
	return db_thread_conflicts();
}

kms_status store_wal_checkpoint(store *st)
{
	store_conn *c;
	int log_frames = 0, done = 0;
	if (st->pg)
		return KMS_OK; /* no WAL file of ours: the server's own */
	KMS_GUARD(conn_get(st, &c));
	KMS_ENSURE(!db_in_transaction(c->db), KMS_INTERNAL,
	           "store: checkpoint inside a transaction");
	sqlite3 *db = db_sqlite_handle(c->db);
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done);
	if (rc == SQLITE_BUSY)
		return KMS_FAIL(KMS_UNAVAILABLE, "store: WAL checkpoint: a reader held it; the next "
		                "one will");
	KMS_ENSURE(rc == SQLITE_OK, KMS_INTERNAL, "store: WAL checkpoint: %s", sqlite3_errmsg(db));
	return KMS_OK;
}

void store_rollback(store *st)
{
	store_conn *c = pthread_getspecific(st->tls);
	if (!c || !db_in_transaction(c->db))
		return;
	/* Not through KMS_FAIL: the thread's message must stay the failure
	 * that made us roll back. */
	if (db_exec(c->db, "ROLLBACK") != DB_OK)
		fprintf(stderr, "store: ROLLBACK failed: %s (%s)\n", db_conn_errstr(c->db),
		        db_conn_errmsg(c->db));
}

/* ---- open, migrate, close ---- */

/* The uid files are made and checked as: the effective one, or the
 * filesystem one while kmsd, started as root, acts as [process] user
 * (kms/kmsd_privs.h). setfsuid(-1) changes nothing and returns it; where a
 * seccomp filter refuses it (systemd's ~@privileged), it was never changed. */
static uid_t file_uid(void)
{
	int fs = setfsuid((uid_t)-1);
	return fs < 0 ? geteuid() : (uid_t)fs;
}

/* Creates the file 0600 if missing; refuses a file that is not ours or that
 * others can write (they could lower a reservation count, or revive a key). */
static kms_status db_file_check(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return KMS_FAIL(KMS_INTERNAL, "store: open %s: %s", path, strerror(errno));
	struct stat sb;
	int rc = fstat(fd, &sb);
	int saved = errno;
	close(fd);
	if (rc != 0)
		return KMS_FAIL(KMS_INTERNAL, "store: stat %s: %s", path, strerror(saved));
	KMS_ENSURE(S_ISREG(sb.st_mode), KMS_INTERNAL, "store: %s is not a regular file", path);
	KMS_ENSURE(sb.st_uid == file_uid(), KMS_INTERNAL,
	           "store: %s belongs to uid %u, not to this process (uid %u)", path,
	           (unsigned)sb.st_uid, (unsigned)file_uid());
	KMS_ENSURE((sb.st_mode & (S_IWGRP | S_IWOTH)) == 0, KMS_INTERNAL,
	           "store: %s is writable by group or others (mode %04o); chmod 600 it", path,
	           (unsigned)(sb.st_mode & 07777));
	return KMS_OK;
}

static kms_status set_wal(store_conn *c)
{
	sqlite3 *db = db_sqlite_handle(c->db);
	sqlite3_stmt *s = NULL;
	kms_status status = KMS_OK;
	int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		status = KMS_FAIL(KMS_INTERNAL, "store: journal_mode=WAL: %s (%s)", sqlite3_errstr(rc),
		                  sqlite3_errmsg(db));
	} else {
		const unsigned char *mode = sqlite3_column_text(s, 0);
		if (!mode || strcmp((const char *)mode, "wal") != 0)
			status = KMS_FAIL(KMS_INTERNAL, "store: journal_mode is %s, not wal",
			                  mode ? (const char *)mode : "NULL");
	}
	sqlite3_finalize(s);
	return status;
}

static kms_status user_version_get(store_conn *c, int *out)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db_sqlite_handle(c->db), "PRAGMA user_version", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	*out = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return KMS_FAIL(KMS_INTERNAL, "store: read user_version: %s", sqlite3_errstr(rc));
	return KMS_OK;
}

static kms_status migrate(store *st, bool *created)
{
	store_conn *c;
	kms_status status;
	int from;

	KMS_GUARD(conn_get(st, &c));
	KMS_GUARD(store_begin(st));
	KMS_GUARD_OUT(status, user_version_get(c, &from));
	*created = from == 0;
	if (from < 0 || from > STORE_SCHEMA_VERSION) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "store: %s has schema version %d; this kmsd knows 0..%d", st->path,
		                  from, STORE_SCHEMA_VERSION);
		goto out;
	}
	for (int v = from; v < STORE_SCHEMA_VERSION; v++) {
		char what[64];
		snprintf(what, sizeof what, "schema migration %d -> %d", v, v + 1);
		KMS_GUARD_OUT(status, conn_exec(db_sqlite_handle(c->db), migrations[v], what));
	}
	if (from != STORE_SCHEMA_VERSION) {
		/* A pragma takes no bound parameter; the number is ours. */
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
		KMS_GUARD_OUT(status, conn_exec(db_sqlite_handle(c->db), sql, "set user_version"));
	}
	KMS_GUARD_OUT(status, store_commit(st));
out:
	if (status != KMS_OK)
		store_rollback(st);
	return status;
}

/* The PostgreSQL database's schema version: schema_version's greatest,
 * 0 when the table is not there (an empty database). Two statements: a
 * statement naming a table that does not exist fails at prepare. */
static kms_status pg_version_get(store *st, int *out)
{
	db_stmt *s;
	*out = -1;
	KMS_GUARD(store_stmt(st, S_PG_VERSION_TABLE,
	                     "SELECT to_regclass('schema_version') IS NOT NULL", &s));
	db_rc rc = db_step(s);
	bool exists = rc == DB_ROW && db_column_int64(s, 0) != 0;
	kms_status status = rc == DB_ROW ? KMS_OK
	                                 : store_fail(s, rc, "look for schema_version", NULL);
	store_stmt_done(s);
	if (status != KMS_OK || !exists) {
		*out = status == KMS_OK ? 0 : -1;
		return status;
	}
	KMS_GUARD(store_stmt(st, S_PG_VERSION, "SELECT max(version) FROM schema_version", &s));
	rc = db_step(s);
	if (rc == DB_ROW)
		*out = (int)db_column_int64(s, 0);
	else
		status = store_fail(s, rc, "read schema_version", NULL);
	store_stmt_done(s);
	return status;
}

/* One attempt: in one SERIALIZABLE transaction, read the version and run
 * the steps up from it. */
static kms_status migrate_pg_once(store *st, bool *created)
{
	store_conn *c;
	kms_status status;
	int from;
	KMS_GUARD(conn_get(st, &c));
	KMS_GUARD(store_begin(st));
	KMS_GUARD_OUT(status, pg_version_get(st, &from));
	*created = from == 0;
	if (from < 0 || from > STORE_SCHEMA_VERSION) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: the PostgreSQL database has "
		                  "schema version %d; this kmsd knows 0..%d", from,
		                  STORE_SCHEMA_VERSION);
		goto out;
	}
	while (from < STORE_SCHEMA_VERSION) {
		const char *sql = store_pg_migration_sql(from);
		if (!sql) {
			status = KMS_FAIL(KMS_INTERNAL, "store: no PostgreSQL schema step from "
			                  "version %d", from);
			goto out;
		}
		db_rc rc = db_exec(c->db, sql);
		if (rc != DB_OK) {
			status = KMS_FAIL(rc == DB_IOERR ? KMS_UNAVAILABLE : KMS_INTERNAL,
			                  "store: PostgreSQL schema step from version %d: %s (%s)", from,
			                  db_conn_errstr(c->db), db_conn_errmsg(c->db));
			goto out;
		}
		KMS_GUARD_OUT(status, pg_version_get(st, &from));
	}
	KMS_GUARD_OUT(status, store_commit(st));
out:
	if (status != KMS_OK)
		store_rollback(st);
	return status;
}

/* Several kmsd starting at once on an empty database: all but one fail
 * their first attempt (the tables exist by then, or serialization) and
 * find the schema made at the next. */
#define PG_MIGRATE_ATTEMPTS 3
static kms_status migrate_pg(store *st, bool *created)
{
	kms_status status = KMS_OK;
	for (int i = 0; i < PG_MIGRATE_ATTEMPTS; i++) {
		status = migrate_pg_once(st, created);
		if (status == KMS_OK || status == KMS_FAILED_PRECONDITION)
			break;
	}
	return status;
}

/* One process per data directory: a second kmsd would reconcile away the
 * first one's intents (destroying HSM objects it is about to acknowledge)
 * and would not see its state changes. */
static kms_status lock_data_dir(const char *data_dir, int *fd_out)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof path, "%s/%s", data_dir, STORE_LOCK_FILE);
	KMS_ENSURE(n > 0 && (size_t)n < sizeof path, KMS_INVALID_ARGUMENT,
	           "store: data directory path too long");
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return KMS_FAIL(KMS_INTERNAL, "store: open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int saved = errno;
		close(fd);
		if (saved == EWOULDBLOCK)
			return KMS_FAIL(KMS_FAILED_PRECONDITION,
			                "store: %s is in use by another process (%s is locked)",
			                data_dir, path);
		return KMS_FAIL(KMS_INTERNAL, "store: flock %s: %s", path, strerror(saved));
	}
	*fd_out = fd;
	return KMS_OK;
}

kms_status store_open(const char *data_dir, store **out, bool *created)
{
	store_options o = { .data_dir = data_dir };
	return store_open_with(&o, out, created);
}

const char *store_replica_id(const store *st)
{
	return st->owner;
}

void store_exclusive_release(store *st)
{
	if (!st)
		return;
	db_close(st->pg_lock);
	st->pg_lock = NULL;
}

static void store_free(store *st)
{
	db_close(st->pg_lock);
	kms_secure_free(st->pg_password); /* wipes the whole block */
	free(st);
}

/* The advisory lock of store_options.pg_exclusive, on a connection of its
 * own (a session lock lasts as long as its session): kmsd's own number
 * ("kms1" in ASCII) and the store's schema, so stores in two schemas of one
 * database are two stores. */
#define PG_EXCLUSIVE_LOCK "1802334001, hashtext(current_schema())"
/* A replica's start-up (reconciliation, the KEK) takes well under a
 * second; a kmsd killed a moment ago leaves its session, and so the lock,
 * until the server notices the connection closed: asked again every 100 ms
 * for this long before the holder is taken to be stuck. */
#define PG_LOCK_WAIT_MS 10000
static kms_status pg_lock_take(store *st)
{
	db_pg_config pc = { .url = st->pg_url, .password = st->pg_password };
	KMS_GUARD(db_pg_open(&pc, &st->pg_lock));
	db_stmt *s = NULL;
	db_rc rc = db_prepare(st->pg_lock, "SELECT pg_try_advisory_lock(" PG_EXCLUSIVE_LOCK ")",
	                      &s);
	bool held = false;
	for (int waited = 0; rc == DB_OK || rc == DB_ROW; waited += 100) {
		rc = db_step(s);
		held = rc == DB_ROW && db_column_int64(s, 0) != 0;
		if (held || rc != DB_ROW || waited >= PG_LOCK_WAIT_MS)
			break;
		db_reset(s);
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kms_status status = KMS_OK;
	if (rc != DB_ROW)
		status = KMS_FAIL(rc == DB_IOERR ? KMS_UNAVAILABLE : KMS_INTERNAL,
		                  "store: the PostgreSQL lock of one kmsd: %s (%s)",
		                  db_conn_errstr(st->pg_lock), db_conn_errmsg(st->pg_lock));
	else if (!held)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: another kmsd has held the start-up "
		                  "lock of the PostgreSQL database %s for %d s: find the replica stuck "
		                  "starting and stop it", st->pg_url, PG_LOCK_WAIT_MS / 1000);
	db_finalize(s);
	return status;
}

/* PostgreSQL: the URL checked and kept, the password in locked memory. */
static kms_status pg_setup(store *st, const store_options *o)
{
	KMS_GUARD(db_pg_url_check(o->pg_url));
	KMS_ENSURE(strlen(o->pg_url) < sizeof st->pg_url, KMS_INVALID_ARGUMENT,
	           "store: [store] url is longer than %zu bytes", sizeof st->pg_url - 1);
	snprintf(st->pg_url, sizeof st->pg_url, "%s", o->pg_url);
	const char *pw = o->pg_password ? o->pg_password : "";
	st->pg_password = kms_secure_alloc(strlen(pw) + 1);
	KMS_ENSURE(st->pg_password, KMS_INTERNAL, "store: out of locked memory for the "
	           "PostgreSQL password");
	memcpy(st->pg_password, pw, strlen(pw) + 1);
	st->pg = true;
	return KMS_OK;
}

kms_status store_open_with(const store_options *o, store **out, bool *created)
{
	kms_status status = KMS_OK;
	store *st = NULL;
	bool key_made = false, lock_made = false;
	const char *data_dir = o->data_dir;

	*out = NULL;
	*created = false;
	KMS_ENSURE(data_dir && data_dir[0], KMS_INVALID_ARGUMENT, "store: no data directory");
	st = calloc(1, sizeof *st);
	KMS_ENSURE(st, KMS_INTERNAL, "store: out of memory");
	st->lock_fd = -1;
	int n = snprintf(st->path, sizeof st->path, "%s/%s", data_dir, STORE_DB_FILE);
	if (n < 0 || (size_t)n >= sizeof st->path) {
		status = KMS_FAIL(KMS_INVALID_ARGUMENT, "store: data directory path too long");
		goto out;
	}
	if (o->pg_url)
		KMS_GUARD_OUT(status, pg_setup(st, o));
	KMS_GUARD_OUT(status, lock_data_dir(data_dir, &st->lock_fd));
	if (!st->pg)
		KMS_GUARD_OUT(status, db_file_check(st->path));
	if (pthread_key_create(&st->tls, conn_release) != 0) {
		status = KMS_FAIL(KMS_INTERNAL, "store: pthread_key_create failed");
		goto out;
	}
	key_made = true;
	if (pthread_mutex_init(&st->lock, NULL) != 0) {
		status = KMS_FAIL(KMS_INTERNAL, "store: pthread_mutex_init failed");
		goto out;
	}
	lock_made = true;

	if (st->pg)
		KMS_GUARD_OUT(status, store_replica_id_load(data_dir, st->owner));
	store_conn *c;
	KMS_GUARD_OUT(status, conn_get(st, &c));
	if (st->pg) {
		if (o->pg_exclusive)
			KMS_GUARD_OUT(status, pg_lock_take(st));
		KMS_GUARD_OUT(status, migrate_pg(st, created));
		*out = st;
		st = NULL;
		goto out;
	}
	struct stat opened;
	if (lstat(st->path, &opened) != 0) {
		status = KMS_FAIL(KMS_INTERNAL, "store: stat %s: %s", st->path, strerror(errno));
		goto out;
	}
	st->dev = opened.st_dev;
	st->ino = opened.st_ino;
	st->identity_known = true;
	KMS_GUARD_OUT(status, set_wal(c));
	KMS_GUARD_OUT(status, migrate(st, created));
	*out = st;
	st = NULL;
out:
	if (st) {
		if (key_made)
			pthread_key_delete(st->tls);
		while (st->conns) {
			store_conn *next = st->conns->next;
			conn_free(st->conns);
			st->conns = next;
		}
		if (lock_made)
			pthread_mutex_destroy(&st->lock);
		if (st->lock_fd >= 0)
			close(st->lock_fd);
		store_free(st);
	}
	return status;
}

void store_close(store *st)
{
	if (!st)
		return;
	/* After this no thread-exit destructor runs for our connections. */
	pthread_key_delete(st->tls);
	pthread_mutex_lock(&st->lock);
	while (st->conns) {
		store_conn *next = st->conns->next;
		conn_free(st->conns);
		st->conns = next;
	}
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_destroy(&st->lock);
	close(st->lock_fd); /* releases the data directory */
	store_free(st);
}
