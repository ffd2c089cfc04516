/*
 * fuzz_authz_wire: the extractor of a signed request's operation bytes
 * (kms/authz/authz_wire.h) over any bytes a peer may send.
 *
 * Invariants:
 *   - it returns KMS_OK, KMS_NOT_FOUND or KMS_INVALID_ARGUMENT, and zeroes
 *     its result unless KMS_OK;
 *   - on KMS_OK the op's bytes lie inside the input, and the number and
 *     name are a member of Request's oneof op;
 *   - where protobuf-c unpacks the same bytes with an operation set, the
 *     extractor never says there is none, and when both succeed they name
 *     the same operation.
 */
#include <string.h>

#include <kms/kms.pb-c.h>

#include "kms/authz/authz_wire.h"
#include "tests/support/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	authz_wire_op op;
	kms_status st = authz_wire_find_op(data, size, &op);
	FUZZ_CHECK(st == KMS_OK || st == KMS_NOT_FOUND || st == KMS_INVALID_ARGUMENT);
	if (st != KMS_OK) {
		FUZZ_CHECK(!op.bytes && !op.len && !op.name && !op.number);
	} else {
		FUZZ_CHECK(op.bytes >= data && op.len <= size &&
		           (size_t)(op.bytes - data) <= size - op.len);
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(&kms__request__descriptor, op.number);
		FUZZ_CHECK(f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		           f->type == PROTOBUF_C_TYPE_MESSAGE && !strcmp(f->name, op.name));
	}
	Kms__Request *req = kms__request__unpack(NULL, size, data);
	if (req) {
		if (req->op_case != KMS__REQUEST__OP__NOT_SET)
			FUZZ_CHECK(st != KMS_NOT_FOUND);
		if (st == KMS_OK)
			FUZZ_CHECK((uint32_t)req->op_case == op.number);
		kms__request__free_unpacked(req, NULL);
	}
	return 0;
}
