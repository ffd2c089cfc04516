/*
 * authz_wire.h: the operation's bytes of a packed kms.Request, as they
 * arrived, for the signed-request MAC (docs/request-signing.md).
 *
 * The MAC covers the op submessage's bytes exactly as the client put them
 * inside the Request: the value of the one length-delimited field whose
 * number is a member of the `op` oneof. kmsd hashes those bytes where they
 * sit, never a re-packing by protobuf-c, so a field protobuf-c would drop,
 * merge or reorder still changes the MAC.
 *
 * The walk is of the top level only and bounded by the bytes given: every
 * tag, varint and length is checked against the bytes left (common/cursor.h).
 * It refuses, as malformed, a wire type kms.proto does not use, a field
 * number 0, a length past the end, a second operation, a second request_id
 * or credential field (protobuf-c would keep the last or merge them, so
 * the signer and kmsd could read different ones), and an op field that is
 * not length-delimited.
 */
#ifndef KMS_AUTHZ_WIRE_H
#define KMS_AUTHZ_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

typedef struct authz_wire_op {
	uint32_t number;      /* the op's field number in kms.Request (10 = encrypt) */
	const char *name;     /* its proto field name ("encrypt"); static storage */
	const uint8_t *bytes; /* the op submessage's value inside the packed bytes */
	size_t len;           /* its length (0 for an empty message) */
} authz_wire_op;

/* Finds the operation of packed[0..len). KMS_OK with *out set;
 * KMS_NOT_FOUND when the bytes are well formed but carry no operation;
 * KMS_INVALID_ARGUMENT when they are malformed as above. On failure *out
 * is zeroed. Sets no error message (the caller writes the reason), does
 * not allocate, never reads outside packed[0..len). */
kms_status authz_wire_find_op(const uint8_t *packed, size_t len, authz_wire_op *out) KMS_MUST_USE;

#endif
