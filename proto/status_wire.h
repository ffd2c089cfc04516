/*
 * proto/status_wire.h: kms_status to and from the wire's Status enum.
 *
 * kms_status (<kms/status.h>) and Kms__Status (generated from kms.proto) are
 * two enums with the same numbers. Each value is asserted equal here, and
 * the two conversions below handle every value of each enum, so renumbering
 * either side or adding a status to one side only fails the build of every
 * file that converts (kmsd's pipeline and handlers, the client library).
 */
#ifndef KMS_PROTO_STATUS_WIRE_H
#define KMS_PROTO_STATUS_WIRE_H

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#define KMS_STATUS_WIRE_SAME(ours, wire)                                       \
	_Static_assert((int)(ours) == (int)(wire), #ours " is not the wire's " #wire)

KMS_STATUS_WIRE_SAME(KMS_OK, KMS__STATUS__OK);
KMS_STATUS_WIRE_SAME(KMS_INVALID_ARGUMENT, KMS__STATUS__INVALID_ARGUMENT);
KMS_STATUS_WIRE_SAME(KMS_NOT_FOUND, KMS__STATUS__NOT_FOUND);
KMS_STATUS_WIRE_SAME(KMS_ALREADY_EXISTS, KMS__STATUS__ALREADY_EXISTS);
KMS_STATUS_WIRE_SAME(KMS_FAILED_PRECONDITION, KMS__STATUS__FAILED_PRECONDITION);
KMS_STATUS_WIRE_SAME(KMS_INVALID_CIPHERTEXT, KMS__STATUS__INVALID_CIPHERTEXT);
KMS_STATUS_WIRE_SAME(KMS_ACCESS_DENIED, KMS__STATUS__ACCESS_DENIED);
KMS_STATUS_WIRE_SAME(KMS_THROTTLED, KMS__STATUS__THROTTLED);
KMS_STATUS_WIRE_SAME(KMS_HSM_UNAVAILABLE, KMS__STATUS__HSM_UNAVAILABLE);
KMS_STATUS_WIRE_SAME(KMS_INTERNAL, KMS__STATUS__INTERNAL);
KMS_STATUS_WIRE_SAME(KMS_UNAVAILABLE, KMS__STATUS__UNAVAILABLE);
#undef KMS_STATUS_WIRE_SAME

/* A status added on one side only must fail the build, not read as another:
 * both conversions switch over every value of their enum with no default,
 * so -Wswitch (on in -Wall, an error under -Werror) names the one missing. */
static inline Kms__Status kms_status_to_wire(kms_status status)
{
	switch (status) {
	case KMS_OK: return KMS__STATUS__OK;
	case KMS_INVALID_ARGUMENT: return KMS__STATUS__INVALID_ARGUMENT;
	case KMS_NOT_FOUND: return KMS__STATUS__NOT_FOUND;
	case KMS_ALREADY_EXISTS: return KMS__STATUS__ALREADY_EXISTS;
	case KMS_FAILED_PRECONDITION: return KMS__STATUS__FAILED_PRECONDITION;
	case KMS_INVALID_CIPHERTEXT: return KMS__STATUS__INVALID_CIPHERTEXT;
	case KMS_ACCESS_DENIED: return KMS__STATUS__ACCESS_DENIED;
	case KMS_THROTTLED: return KMS__STATUS__THROTTLED;
	case KMS_HSM_UNAVAILABLE: return KMS__STATUS__HSM_UNAVAILABLE;
	case KMS_INTERNAL: return KMS__STATUS__INTERNAL;
	case KMS_UNAVAILABLE: return KMS__STATUS__UNAVAILABLE;
	}
	return KMS__STATUS__INTERNAL; /* not a kms_status at all */
}

/* A wire status as a kms_status; a number this build does not know (a newer
 * peer's) is KMS_INTERNAL. */
static inline kms_status kms_status_from_wire(int wire)
{
	switch ((Kms__Status)wire) {
	case KMS__STATUS__OK: return KMS_OK;
	case KMS__STATUS__INVALID_ARGUMENT: return KMS_INVALID_ARGUMENT;
	case KMS__STATUS__NOT_FOUND: return KMS_NOT_FOUND;
	case KMS__STATUS__ALREADY_EXISTS: return KMS_ALREADY_EXISTS;
	case KMS__STATUS__FAILED_PRECONDITION: return KMS_FAILED_PRECONDITION;
	case KMS__STATUS__INVALID_CIPHERTEXT: return KMS_INVALID_CIPHERTEXT;
	case KMS__STATUS__ACCESS_DENIED: return KMS_ACCESS_DENIED;
	case KMS__STATUS__THROTTLED: return KMS_THROTTLED;
	case KMS__STATUS__HSM_UNAVAILABLE: return KMS_HSM_UNAVAILABLE;
	case KMS__STATUS__INTERNAL: return KMS_INTERNAL;
	case KMS__STATUS__UNAVAILABLE: return KMS_UNAVAILABLE;
	case _KMS__STATUS_IS_INT_SIZE:
		break;
	}
	return KMS_INTERNAL;
}

#endif
