/*
 * kmsd_store.h: where kmsd keeps the metadata of its keys: SQLite in
 * [kmsd] data_dir (the default), or the PostgreSQL database of [store] url
 * with the password of [store] password_file (docs/scale-out.md).
 *
 * The password file is read once at start, while kmsd may still read
 * files only root can (before [process] user takes effect), into locked
 * memory that is wiped when freed. Its rules are the PIN file's: a regular
 * file, no access for group or others, one line of at most
 * KMSD_STORE_PASSWORD_MAX bytes (a final newline is not part of it), no
 * control characters.
 */
#ifndef KMS_KMSD_STORE_H
#define KMS_KMSD_STORE_H

#include "common/error.h"
#include "kms/config.h"
#include "kms/store/store.h"

#define KMSD_STORE_PASSWORD_MAX 512

/* Checks [store] url (store_pg_url_check), then reads the password of
 * [store] password_file into locked memory (*out), or NULL when the config
 * has none. Free with kmsd_store_password_free. */
kms_status kmsd_store_password_load(const kmsd_config *cfg, char **out) KMS_MUST_USE;

/* Wipes and frees a password of kmsd_store_password_load; NULL is ignored. */
void kmsd_store_password_free(char *password);

/* The store's place for cfg: data_dir, and [store]'s URL and the password
 * (may be NULL) when there is a [store]. keyring_open holds the start-up
 * lock of pg_exclusive through reconciliation only. */
store_options kmsd_store_options(const kmsd_config *cfg, const char *password);

#endif
