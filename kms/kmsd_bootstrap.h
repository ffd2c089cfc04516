/*
 * kmsd_bootstrap.h: `kmsd --bootstrap-admin NAME --credentials-out FILE`,
 * the first principal of a fresh data directory (docs/authorization.md,
 * "Principals").
 *
 * It works only when the store holds no principal at all, deleted ones
 * included; otherwise it refuses and changes nothing. It takes the data
 * dir's lock (store.h), so kmsd must not be running. It makes sure the
 * access key secret wrapping key is on the token, writes the credentials
 * file (docs/request-signing.md, "Credentials file") mode 0600 through the
 * temp file FILE.tmp and a link, refusing to replace an existing file, then
 * creates principal NAME (ENABLED, with roles) and its access key in one
 * transaction (both or neither; on failure the file is removed again). A
 * FILE.tmp already there (left by an interrupted earlier run) is refused
 * with a line saying to remove it. The secret goes only to the file: never
 * to a log or stdout.
 */
#ifndef KMS_KMSD_BOOTSTRAP_H
#define KMS_KMSD_BOOTSTRAP_H

#include <stdint.h>

#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/config.h"
#include "kms/format/authz_names.h"
#include "kms/store/store.h"

/* Parses "admin,app,auditor" (any non-empty subset, each at most once) into
 * PRINCIPAL_ROLE_* bits. KMS_INVALID_ARGUMENT naming the bad role. */
kms_status kmsd_bootstrap_roles(const char *text, uint32_t *roles) KMS_MUST_USE;

/* Creates the first principal and its access key in the store at so
 * (kmsd_store.h) and writes the credentials file out_path; its access key
 * id into id. */
kms_status kmsd_bootstrap(const kmsd_config *cfg, const store_options *so, hsm *h,
                          const char *name, uint32_t roles, const char *out_path,
                          char id[static AUTHZ_ID_SIZE]) KMS_MUST_USE;

#endif
