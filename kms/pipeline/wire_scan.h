/*
 * wire_scan.h: a request's protobuf wire bytes, walked by the descriptors
 * before protobuf-c unpacks a byte of them.
 *
 * protobuf-c allocates for every element it meets: an empty batch item is two
 * bytes on the wire and about a hundred once unpacked, so an 8 MiB request of
 * empty items becomes hundreds of megabytes of (locked) arena before any
 * validator sees a count. The walk bounds what unpacking can allocate:
 *
 *   - every repeated field's elements, per message instance, against the
 *     schema's limit (include/kms/limits.h; a repeated field the table
 *     does not name gets WIRE_REPEATED_DEFAULT);
 *   - a singular field, or a second arm of a oneof, at most once per
 *     instance (protobuf-c would merge or reallocate each repeat);
 *   - unknown fields per instance, nesting depth, and the fields of the
 *     whole request (KMS_REQUEST_FIELDS_MAX);
 *   - every length against the bytes left, every wire type against the
 *     field's type.
 *
 * It also notes a string field holding a NUL byte: protobuf-c would hand
 * it over cut at the NUL. That one is refused after unpacking, so that the
 * refusal can name the request id.
 */
#ifndef KMS_WIRE_SCAN_H
#define KMS_WIRE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/error.h"

/* A repeated field with no limit of its own in the table. */
#define WIRE_REPEATED_DEFAULT 16
/* Unknown fields in one message instance. */
#define WIRE_UNKNOWN_MAX 16
/* Request > Batch > item > StringPair is 4 deep. */
#define WIRE_DEPTH_MAX 8

typedef struct wire_scan_result {
	size_t fields;        /* every field of every instance */
	bool nul_in_string;   /* a string field holds U+0000 */
} wire_scan_result;

/* Walks bytes[0..len) as a message of type desc. KMS_OK when unpacking it
 * is bounded as above; otherwise KMS_INVALID_ARGUMENT with one line naming
 * the field and the limit. Does not allocate; never reads past len. */
kms_status wire_scan(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes, size_t len,
                     wire_scan_result *out) KMS_MUST_USE;

/* The request id of bytes that wire_scan or unpacking refused, so that the
 * refusal can still echo it (docs/protocol.md, "The envelope"): the last
 * top-level field 2 of a kms.Request, length-delimited, copied to out only
 * if the walk up to the end of the bytes is well formed and the id is
 * 1..cap-1 bytes. The caller checks its characters. Sets no error. */
bool wire_scan_request_id(const uint8_t *bytes, size_t len, char *out, size_t cap);

#endif
