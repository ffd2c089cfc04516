/*
 * proto/status_wire.h: kms_status to and from the wire's Status enum.
 *
 * kms_status (<kms/status.h>) and Kms__Status (generated from kms.proto) are
 * two enums with the same numbers, converted by a cast. Nothing in either
 * file ties them, so each value is asserted here: renumbering either side,
 * or adding a kms_status the wire lacks, fails the build of every file that
 * converts (kmsd's pipeline and handlers, the client library). A wire status
 * this build lacks reads as KMS_INTERNAL (kms_status_from_wire).
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
/* The last one asserted is the last kms_status: a status added to
 * <kms/status.h> must be added above, and so to the wire. */
_Static_assert(KMS_STATUS_MAX == KMS_UNAVAILABLE, "a kms_status is not tied to the wire");

#undef KMS_STATUS_WIRE_SAME

static inline Kms__Status kms_status_to_wire(kms_status status)
{
	return (Kms__Status)status;
}

/* A wire status as a kms_status; a number this build does not know (a newer
 * peer's) is KMS_INTERNAL. */
static inline kms_status kms_status_from_wire(int wire)
{
	if (wire < KMS_OK || wire > KMS_STATUS_MAX)
		return KMS_INTERNAL;
	return (kms_status)wire;
}

#endif
