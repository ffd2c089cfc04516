/*
 * rfc3339.h: RFC 3339 date-times read strictly, to unix seconds.
 *
 * Accepted: YYYY-MM-DDTHH:MM:SS, optional fractional seconds (1 to 9
 * digits, dropped), then "Z" or "+HH:MM"/"-HH:MM"; "T" and "Z" may be
 * lowercase (RFC 3339 section 5.6 allows it). Years 1970 to 9999, and
 * the instant no earlier than 1970-01-01T00:00:00Z; a leap second (:60) is
 * refused. Pure: no locale, no time zone, no allocation.
 */
#ifndef KMS_COMMON_RFC3339_H
#define KMS_COMMON_RFC3339_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

/* s[0..len) (not necessarily NUL-terminated) to *out, unix seconds UTC.
 * KMS_INVALID_ARGUMENT (message: "not an RFC 3339 time", never the text). */
kms_status rfc3339_parse(const char *s, size_t len, int64_t *out) KMS_MUST_USE;

/* unix seconds to "YYYY-MM-DDTHH:MM:SSZ" (21 bytes with the NUL). */
#define RFC3339_TEXT_SIZE 21
void rfc3339_format(int64_t t, char out[static RFC3339_TEXT_SIZE]);

/* Adds n calendar units to t, UTC ("DAY", "MONTH", "YEAR"; a month end is
 * clamped: Jan 31 + 1 month is Feb 28 or 29). INT64_MAX on overflow or an
 * unknown unit. */
int64_t rfc3339_add_calendar(int64_t t, const char *unit, int64_t n);

/* The start of the calendar period ("HOUR", "DAY", "MONTH", "YEAR", UTC)
 * that holds t. */
int64_t rfc3339_period_start(int64_t t, const char *unit);

#endif
