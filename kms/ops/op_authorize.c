/*
 * op_authorize.c: the key check every handler that uses a key makes before
 * the keyring acts on it: the key reference (id or alias) resolved to its
 * id, noted for the audit entry, and decided for this caller
 * (authz_enforce_key: the key's policy, live grants, rate limit).
 */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "kms/authz/authz_enforce.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"

kms_status op_authorize_ref(op_ctx *ctx, const char *key_ref, Kms__StringPair *const *pairs,
                            size_t n_pairs, char key_id[static KMS_KEYID_TEXT_SIZE])
{
	store_key k;
	kms_status st = keyring_resolve(ctx->d->keyring, key_ref, &k);
	if (st != KMS_OK) {
		key_id[0] = '\0';
		op_note_key(ctx, key_ref, 0); /* the request fails under what it named */
		return st;
	}
	snprintf(key_id, KMS_KEYID_TEXT_SIZE, "%s", k.id);
	op_note_key(ctx, key_id, 0);
	return authz_enforce_key(ctx, key_id, pairs, n_pairs);
}
