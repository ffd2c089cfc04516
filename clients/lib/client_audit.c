/*
 * client_audit.c: the audit-log calls (checkpoint, inclusion and
 * consistency proofs). The proofs are returned as they came; checking them
 * against a checkpoint is the caller's (or `kms-admin audit verify`'s) job.
 */
#include "clients/lib/client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void kms_checkpoint_free(kms_checkpoint *cp)
{
	if (!cp)
		return;
	free(cp->checkpoint);
	free(cp->verifier_key);
	memset(cp, 0, sizeof *cp);
}

void kms_inclusion_proof_free(kms_inclusion_proof *proof)
{
	if (!proof)
		return;
	free(proof->hashes);
	free(proof->entry);
	memset(proof, 0, sizeof *proof);
}

void kms_consistency_proof_free(kms_consistency_proof *proof)
{
	if (!proof)
		return;
	free(proof->hashes);
	memset(proof, 0, sizeof *proof);
}

/* Copies a list of 32-byte hashes, refusing any of another size. */
static kms_status copy_hashes(const ProtobufCBinaryData *src, size_t n, const char *op,
                              uint8_t (**out)[KMS_HASH_LEN], size_t *n_out,
                              kms_error *err)
{
	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return KMS_OK;
	uint8_t (*hashes)[KMS_HASH_LEN] = calloc(n, sizeof *hashes);
	if (!hashes)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (src[i].len != KMS_HASH_LEN) {
			free(hashes);
			return client_protocol_error(err, op, "a proof hash is not 32 bytes");
		}
		memcpy(hashes[i], src[i].data, KMS_HASH_LEN);
	}
	*out = hashes;
	*n_out = n;
	return KMS_OK;
}

kms_status kms_get_checkpoint(kms_client *client, kms_checkpoint *out, kms_error *err)
{
	Kms__Request req;
	Kms__GetCheckpointRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "get_checkpoint", err));
	kms__request__init(&req);
	kms__get_checkpoint_request__init(&op);
	req.op_case = KMS__REQUEST__OP_GET_CHECKPOINT;
	req.get_checkpoint = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GET_CHECKPOINT,
	                           &resp, err));
	const Kms__GetCheckpointResponse *r = resp->get_checkpoint;
	if (r->root_hash.len != KMS_HASH_LEN) {
		st = client_protocol_error(err, "get_checkpoint", "the root hash is not 32 bytes");
		goto out;
	}
	KMS_GUARD_OUT(st, client_dup_str(r->checkpoint, &out->checkpoint, err));
	KMS_GUARD_OUT(st, client_dup_str(r->verifier_key, &out->verifier_key, err));
	memcpy(out->root_hash, r->root_hash.data, KMS_HASH_LEN);
	out->tree_size = r->tree_size;
out:
	if (st != KMS_OK)
		kms_checkpoint_free(out);
	kms_response_free(resp);
	return st;
}

kms_status kms_get_inclusion_proof(kms_client *client, uint64_t index, uint64_t tree_size,
                                   kms_inclusion_proof *out, kms_error *err)
{
	Kms__Request req;
	Kms__GetInclusionProofRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "get_inclusion_proof", err));
	kms__request__init(&req);
	kms__get_inclusion_proof_request__init(&op);
	op.index = index;
	op.tree_size = tree_size;
	req.op_case = KMS__REQUEST__OP_GET_INCLUSION_PROOF;
	req.get_inclusion_proof = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GET_INCLUSION_PROOF,
	                           &resp, err));
	const Kms__GetInclusionProofResponse *r = resp->get_inclusion_proof;
	KMS_GUARD_OUT(st, copy_hashes(r->hashes, r->n_hashes, "get_inclusion_proof",
	                              &out->hashes, &out->n_hashes, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->entry, &out->entry, &out->entry_len, err));
	out->index = r->index;
	out->tree_size = r->tree_size;
out:
	if (st != KMS_OK)
		kms_inclusion_proof_free(out);
	kms_response_free(resp);
	return st;
}

kms_status kms_get_consistency_proof(kms_client *client, uint64_t old_size,
                                     uint64_t new_size, kms_consistency_proof *out,
                                     kms_error *err)
{
	Kms__Request req;
	Kms__GetConsistencyProofRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "get_consistency_proof", err));
	kms__request__init(&req);
	kms__get_consistency_proof_request__init(&op);
	op.old_size = old_size;
	op.new_size = new_size;
	req.op_case = KMS__REQUEST__OP_GET_CONSISTENCY_PROOF;
	req.get_consistency_proof = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GET_CONSISTENCY_PROOF,
	                           &resp, err));
	const Kms__GetConsistencyProofResponse *r = resp->get_consistency_proof;
	KMS_GUARD_OUT(st, copy_hashes(r->hashes, r->n_hashes, "get_consistency_proof",
	                              &out->hashes, &out->n_hashes, err));
	out->old_size = r->old_size;
	out->new_size = r->new_size;
out:
	kms_response_free(resp);
	return st;
}
