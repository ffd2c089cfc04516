#include "kms/pipeline/wire_scan.h"

#include <string.h>

#include <kms/limits.h>

/* Fields one message type may declare; kms.Request has 55. A type with
 * more fails the scan (closed) until this grows. */
#define WIRE_FIELDS_PER_MESSAGE_MAX 96

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

/* The schema's limit for each repeated field of a request. */
static const struct repeated_limit {
	const char *message; /* full name */
	const char *field;
	size_t max;
} repeated_limits[] = {
	{ "kms.BatchEncryptRequest", "items", KMS_BATCH_MAX },
	{ "kms.BatchDecryptRequest", "items", KMS_BATCH_MAX },
	{ "kms.BatchGenerateDataKeyRequest", "items", KMS_BATCH_MAX },
	{ "kms.EncryptRequest", "encryption_context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.DecryptRequest", "encryption_context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.ReEncryptRequest", "source_encryption_context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.ReEncryptRequest", "destination_encryption_context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.GenerateDataKeyRequest", "encryption_context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.GenerateDataKeyWithoutPlaintextRequest", "encryption_context",
	  KMS_CONTEXT_MAX_PAIRS },
	{ "kms.PseudonymizeRequest", "values", KMS_PSEUDONYM_VALUES_MAX },
	{ "kms.PseudonymizeRequest", "context", KMS_CONTEXT_MAX_PAIRS },
	{ "kms.CreateKeyRequest", "tags", KMS_TAGS_MAX },
	{ "kms.TagKeyRequest", "tags", KMS_TAGS_MAX },
	{ "kms.UntagKeyRequest", "tag_keys", KMS_TAGS_MAX },
};

static size_t repeated_max(const ProtobufCMessageDescriptor *desc,
                           const ProtobufCFieldDescriptor *f)
{
	for (size_t i = 0; i < sizeof repeated_limits / sizeof repeated_limits[0]; i++)
		if (!strcmp(repeated_limits[i].message, desc->name) &&
		    !strcmp(repeated_limits[i].field, f->name))
			return repeated_limits[i].max;
	return WIRE_REPEATED_DEFAULT;
}

/* Walk state shared by every instance of one request. */
typedef struct scan {
	wire_scan_result *out;
} scan;

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

static unsigned wire_type_of(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WIRE_FIXED32;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WIRE_FIXED64;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WIRE_LEN;
	default:
		return WIRE_VARINT;
	}
}

static kms_status malformed(const ProtobufCMessageDescriptor *desc, uint64_t number,
                            const char *why)
{
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "request is not a valid kms.Request protobuf: "
	                "field %llu of %s: %s", (unsigned long long)number, desc->name, why);
}

/* Elements in a packed run of a repeated scalar field. */
static kms_status packed_count(const ProtobufCMessageDescriptor *desc,
                               const ProtobufCFieldDescriptor *f, const uint8_t *p,
                               size_t n, size_t *count)
{
	switch (wire_type_of(f->type)) {
	case WIRE_FIXED32:
		if (n % 4)
			return malformed(desc, f->id, "packed length not a multiple of 4");
		*count = n / 4;
		return KMS_OK;
	case WIRE_FIXED64:
		if (n % 8)
			return malformed(desc, f->id, "packed length not a multiple of 8");
		*count = n / 8;
		return KMS_OK;
	case WIRE_VARINT:
		*count = 0;
		for (size_t i = 0; i < n; i++)
			*count += !(p[i] & 0x80);
		if (n && (p[n - 1] & 0x80))
			return malformed(desc, f->id, "packed varint cut short");
		return KMS_OK;
	default:
		return malformed(desc, f->id, "a packed run of a field that cannot be packed");
	}
}

/* Counts one more occurrence of f (count elements) in this instance and
 * checks it against f's limit. */
static kms_status count_field(const ProtobufCMessageDescriptor *desc,
                              const ProtobufCFieldDescriptor *f, uint32_t counts[],
                              size_t count)
{
	size_t at = (size_t)(f - desc->fields);
	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		if (counts[at])
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "request: field %s.%s appears more than "
			                "once: a field that is not repeated is sent once", desc->name,
			                f->name);
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
			for (unsigned i = 0; i < desc->n_fields; i++)
				if (counts[i] && (desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
				    desc->fields[i].quantifier_offset == f->quantifier_offset)
					return KMS_FAIL(KMS_INVALID_ARGUMENT, "request: %s sets both %s and "
					                "%s: send one operation per request", desc->name,
					                desc->fields[i].name, f->name);
		counts[at] = 1;
		return KMS_OK;
	}
	size_t max = repeated_max(desc, f);
	if (count > max || counts[at] > max - count)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request: %s.%s has more than %zu elements "
		                "(its limit): send at most %zu", desc->name, f->name, max, max);
	counts[at] += (uint32_t)count;
	return KMS_OK;
}

static kms_status add_fields(scan *s, size_t n)
{
	if (n > KMS_REQUEST_FIELDS_MAX - s->out->fields)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request has more than %zu protobuf fields "
		                "(the limit for one request)", (size_t)KMS_REQUEST_FIELDS_MAX);
	s->out->fields += n;
	return KMS_OK;
}

/* Skips the value of an unknown field (or checks a known scalar's). */
static kms_status skip_value(const ProtobufCMessageDescriptor *desc, uint64_t number,
                             unsigned wire, const uint8_t **p, const uint8_t *end)
{
	uint64_t n;
	switch (wire) {
	case WIRE_VARINT:
		if (!read_varint(p, end, &n))
			return malformed(desc, number, "varint cut short");
		return KMS_OK;
	case WIRE_FIXED64:
		if (end - *p < 8)
			return malformed(desc, number, "64-bit value cut short");
		*p += 8;
		return KMS_OK;
	case WIRE_FIXED32:
		if (end - *p < 4)
			return malformed(desc, number, "32-bit value cut short");
		*p += 4;
		return KMS_OK;
	case WIRE_LEN:
		if (!read_varint(p, end, &n) || n > (uint64_t)(end - *p))
			return malformed(desc, number, "length past the end");
		*p += n;
		return KMS_OK;
	default: /* groups: kms.proto has none */
		return malformed(desc, number, "a wire type kms.proto does not use");
	}
}

static kms_status scan_message(scan *s, const ProtobufCMessageDescriptor *desc,
                               const uint8_t *p, size_t len, unsigned depth);

/* One occurrence of a known field f, its tag already read. */
static kms_status scan_known(scan *s, const ProtobufCMessageDescriptor *desc,
                             const ProtobufCFieldDescriptor *f, unsigned wire,
                             const uint8_t **p, const uint8_t *end, uint32_t counts[],
                             unsigned depth)
{
	unsigned want = wire_type_of(f->type);
	bool packed = wire == WIRE_LEN && want != WIRE_LEN &&
	              f->label == PROTOBUF_C_LABEL_REPEATED;
	if (wire != want && !packed)
		return malformed(desc, f->id, "wire type does not match the field's type");
	if (wire != WIRE_LEN) {
		KMS_GUARD(skip_value(desc, f->id, wire, p, end));
		return count_field(desc, f, counts, 1);
	}
	uint64_t n;
	if (!read_varint(p, end, &n) || n > (uint64_t)(end - *p))
		return malformed(desc, f->id, "length past the end");
	const uint8_t *value = *p;
	*p += n;
	if (packed) {
		size_t elements = 0;
		KMS_GUARD(packed_count(desc, f, value, (size_t)n, &elements));
		KMS_GUARD(add_fields(s, elements));
		return count_field(desc, f, counts, elements);
	}
	KMS_GUARD(count_field(desc, f, counts, 1));
	if (f->type == PROTOBUF_C_TYPE_STRING && memchr(value, 0, (size_t)n))
		s->out->nul_in_string = true;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return scan_message(s, f->descriptor, value, (size_t)n, depth + 1);
	return KMS_OK;
}

static kms_status scan_message(scan *s, const ProtobufCMessageDescriptor *desc,
                               const uint8_t *p, size_t len, unsigned depth)
{
	const uint8_t *end = p + len;
	uint32_t counts[WIRE_FIELDS_PER_MESSAGE_MAX] = { 0 };
	size_t unknown = 0;
	if (depth > WIRE_DEPTH_MAX)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request: messages nested more than %d deep",
		                WIRE_DEPTH_MAX);
	if (desc->n_fields > WIRE_FIELDS_PER_MESSAGE_MAX)
		return KMS_FAIL(KMS_INTERNAL, "request scan: %s has %u fields, more than the "
		                "scan's %d", desc->name, desc->n_fields, WIRE_FIELDS_PER_MESSAGE_MAX);
	while (p < end) {
		uint64_t tag = 0;
		if (!read_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
			return malformed(desc, tag >> 3, "bad tag");
		KMS_GUARD(add_fields(s, 1));
		unsigned wire = (unsigned)(tag & 7);
		const ProtobufCFieldDescriptor *f =
		        protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
		if (f) {
			KMS_GUARD(scan_known(s, desc, f, wire, &p, end, counts, depth));
			continue;
		}
		if (++unknown > WIRE_UNKNOWN_MAX)
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "request: %s has more than %d unknown "
			                "fields", desc->name, WIRE_UNKNOWN_MAX);
		KMS_GUARD(skip_value(desc, tag >> 3, wire, &p, end));
	}
	return KMS_OK;
}

kms_status wire_scan(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes, size_t len,
                     wire_scan_result *out)
{
	memset(out, 0, sizeof *out);
	scan s = { .out = out };
	return scan_message(&s, desc, bytes, len, 0);
}

bool wire_scan_request_id(const uint8_t *bytes, size_t len, char *out, size_t cap)
{
	const uint8_t *p = bytes, *end = bytes + len;
	const uint8_t *id = NULL;
	uint64_t id_len = 0;
	out[0] = '\0';
	while (p < end) { /* every turn consumes at least one byte */
		uint64_t tag, n;
		if (!read_varint(&p, end, &tag))
			return false;
		switch ((unsigned)(tag & 7)) {
		case WIRE_VARINT:
			if (!read_varint(&p, end, &n))
				return false;
			break;
		case WIRE_FIXED64:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case WIRE_FIXED32:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		case WIRE_LEN:
			if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
				return false;
			if (tag >> 3 == 2) {
				id = p;
				id_len = n;
			}
			p += n;
			break;
		default:
			return false;
		}
	}
	if (!id || id_len == 0 || id_len >= cap)
		return false;
	memcpy(out, id, (size_t)id_len);
	out[id_len] = '\0';
	return true;
}
