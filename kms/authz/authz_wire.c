/*
 * authz_wire.c: the operation's bytes of a packed kms.Request (authz_wire.h).
 */
#include "kms/authz/authz_wire.h"

#include <stdbool.h>
#include <string.h>

#include <kms/kms.pb-c.h>

#include "common/cursor.h"

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
enum { FIELD_REQUEST_ID = 2, FIELD_CREDENTIAL = 3 };
/* A varint is at most 10 bytes; protobuf field numbers fit 29 bits. */
#define VARINT_MAX_BYTES 10
#define FIELD_NUMBER_MAX ((1u << 29) - 1)

static bool read_varint(kms_cursor *c, uint64_t *out)
{
	uint64_t v = 0;
	*out = 0;
	for (unsigned i = 0; i < VARINT_MAX_BYTES; i++) {
		uint8_t b;
		if (!kms_cursor_u8(c, &b))
			return false;
		if (i == VARINT_MAX_BYTES - 1 && b > 1) {
			c->ok = false; /* more than 64 bits */
			return false;
		}
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	c->ok = false;
	return false;
}

/* The Request's oneof member with this number, or NULL. */
static const ProtobufCFieldDescriptor *op_field(uint64_t number)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&kms__request__descriptor, (unsigned)number);
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return NULL;
	return f;
}

static kms_status malformed(authz_wire_op *out)
{
	memset(out, 0, sizeof *out);
	return KMS_INVALID_ARGUMENT;
}

kms_status authz_wire_find_op(const uint8_t *packed, size_t len, authz_wire_op *out)
{
	kms_cursor c = kms_cursor_init(packed, len);
	bool seen_id = false, seen_credential = false, seen_op = false;
	const uint8_t *skipped;

	memset(out, 0, sizeof *out);
	if (!c.ok)
		return KMS_INVALID_ARGUMENT;
	/* Every field takes at least one byte, so this loop ends within len
	 * rounds. */
	while (c.left > 0) {
		uint64_t tag, n;
		if (!read_varint(&c, &tag))
			return malformed(out);
		uint64_t number = tag >> 3;
		unsigned wire = (unsigned)(tag & 7);
		if (number == 0 || number > FIELD_NUMBER_MAX)
			return malformed(out);
		const ProtobufCFieldDescriptor *f = op_field(number);
		switch (wire) {
		case WIRE_VARINT:
			if (f || !read_varint(&c, &n))
				return malformed(out);
			break;
		case WIRE_FIXED64:
			if (f || !kms_cursor_take(&c, 8, &skipped))
				return malformed(out);
			break;
		case WIRE_FIXED32:
			if (f || !kms_cursor_take(&c, 4, &skipped))
				return malformed(out);
			break;
		case WIRE_LEN: {
			const uint8_t *value;
			if (!read_varint(&c, &n) || n > c.left ||
			    !kms_cursor_take(&c, (size_t)n, &value))
				return malformed(out);
			if (number == FIELD_REQUEST_ID) {
				if (seen_id)
					return malformed(out);
				seen_id = true;
			} else if (number == FIELD_CREDENTIAL) {
				if (seen_credential)
					return malformed(out);
				seen_credential = true;
			} else if (f) {
				if (seen_op)
					return malformed(out);
				seen_op = true;
				out->number = (uint32_t)number;
				out->name = f->name;
				out->bytes = value;
				out->len = (size_t)n;
			}
			break;
		}
		default: /* groups (3, 4) and 6, 7: kms.proto uses none */
			return malformed(out);
		}
	}
	if (!kms_cursor_done(&c))
		return malformed(out);
	if (!seen_op) {
		memset(out, 0, sizeof *out);
		return KMS_NOT_FOUND;
	}
	return KMS_OK;
}
