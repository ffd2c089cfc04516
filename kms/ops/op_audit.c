/* op_audit.c: GetCheckpoint, GetInclusionProof, GetConsistencyProof. */
#include <stdlib.h>
#include <string.h>

#include "kms/audit/audit.h"
#include "common/error.h"
#include "kms/pipeline/ops.h"

static kms_status need_log(op_ctx *ctx)
{
	KMS_ENSURE(ctx->d->audit, KMS_FAILED_PRECONDITION, "this kmsd has no audit log configured");
	return KMS_OK;
}

/* n hashes (malloc'ed by the audit log) -> repeated bytes in the arena. */
static kms_status hashes_out(op_ctx *ctx, uint8_t (*hashes)[AUDIT_HASH_LEN], size_t n,
                             ProtobufCBinaryData **out, size_t *n_out)
{
	*out = arena_alloc(ctx->arena, (n + 1) * sizeof **out);
	uint8_t *copy = arena_memdup(ctx->arena, hashes, n * AUDIT_HASH_LEN);
	free(hashes);
	KMS_ENSURE(*out && copy, KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; i < n; i++) {
		(*out)[i].data = copy + i * AUDIT_HASH_LEN;
		(*out)[i].len = AUDIT_HASH_LEN;
	}
	*n_out = n;
	return KMS_OK;
}

kms_status op_get_checkpoint(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	(void)req;
	KMS_GUARD(need_log(ctx));
	Kms__GetCheckpointResponse *c;
	OP_ALLOC(ctx, c);
	kms__get_checkpoint_response__init(c);
	char *note = NULL;
	uint8_t root[AUDIT_HASH_LEN];
	char vkey[AUDIT_VERIFIER_KEY_MAX];
	KMS_GUARD(audit_checkpoint(ctx->d->audit, &note, &c->tree_size, root));
	c->checkpoint = arena_strdup(ctx->arena, note);
	free(note);
	audit_verifier_key(ctx->d->audit, vkey);
	c->verifier_key = arena_strdup(ctx->arena, vkey);
	c->root_hash.data = arena_memdup(ctx->arena, root, sizeof root);
	c->root_hash.len = sizeof root;
	KMS_ENSURE(c->checkpoint && c->verifier_key && c->root_hash.data, KMS_INTERNAL,
	           "out of request memory");
	resp->get_checkpoint = c;
	resp->result_case = KMS__RESPONSE__RESULT_GET_CHECKPOINT;
	return KMS_OK;
}

kms_status op_get_inclusion_proof(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__GetInclusionProofRequest *r = req->get_inclusion_proof;
	KMS_GUARD(need_log(ctx));
	Kms__GetInclusionProofResponse *p;
	OP_ALLOC(ctx, p);
	kms__get_inclusion_proof_response__init(p);
	uint8_t (*hashes)[AUDIT_HASH_LEN] = NULL;
	size_t n = 0;
	char *entry = NULL;
	size_t entry_len = 0;
	uint64_t tree_size = r->tree_size;
	KMS_GUARD(audit_inclusion_proof(ctx->d->audit, r->index, &tree_size, &hashes, &n, &entry,
	                                &entry_len));
	p->entry.data = arena_memdup(ctx->arena, entry, entry_len);
	p->entry.len = entry_len;
	free(entry);
	KMS_ENSURE(p->entry.data, KMS_INTERNAL, "out of request memory");
	p->index = r->index;
	p->tree_size = tree_size;
	KMS_GUARD(hashes_out(ctx, hashes, n, &p->hashes, &p->n_hashes));
	resp->get_inclusion_proof = p;
	resp->result_case = KMS__RESPONSE__RESULT_GET_INCLUSION_PROOF;
	return KMS_OK;
}

kms_status op_get_consistency_proof(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__GetConsistencyProofRequest *r = req->get_consistency_proof;
	KMS_GUARD(need_log(ctx));
	Kms__GetConsistencyProofResponse *p;
	OP_ALLOC(ctx, p);
	kms__get_consistency_proof_response__init(p);
	uint8_t (*hashes)[AUDIT_HASH_LEN] = NULL;
	size_t n = 0;
	uint64_t new_size = r->new_size;
	KMS_GUARD(audit_consistency_proof(ctx->d->audit, r->old_size, &new_size, &hashes, &n));
	p->old_size = r->old_size;
	p->new_size = new_size;
	KMS_GUARD(hashes_out(ctx, hashes, n, &p->hashes, &p->n_hashes));
	resp->get_consistency_proof = p;
	resp->result_case = KMS__RESPONSE__RESULT_GET_CONSISTENCY_PROOF;
	return KMS_OK;
}
