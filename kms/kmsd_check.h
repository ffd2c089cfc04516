/*
 * kmsd_check.h: `kmsd --check`, the read-only start-up check.
 *
 * A check changes nothing: it may run beside a live kmsd on the same config,
 * and on a fresh token and data dir it creates no HSM object and no file. It
 * finds (never creates) the audit signing key, lists the token's objects,
 * and looks at the data dir's files (the store's header, the audit log's
 * size) without opening the store, taking the audit log's lock or writing.
 */
#ifndef KMS_KMSD_CHECK_H
#define KMS_KMSD_CHECK_H

#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/config.h"

/* Logs one info line per finding; fails on the first thing that would stop
 * kmsd from starting (a data dir that is not a directory, a store file that
 * is not SQLite, a file that cannot be read, an HSM call that fails). */
kms_status kmsd_check(const kmsd_config *cfg, hsm *h) KMS_MUST_USE;

#endif
