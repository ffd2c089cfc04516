/*
 * rfc3339.c: RFC 3339 date-times to unix seconds and back, and calendar
 * arithmetic in UTC, without the C library's time zone state.
 */
#include "common/rfc3339.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
	static const unsigned days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* n decimal digits at s, into *out. */
static bool digits(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

kms_status rfc3339_parse(const char *s, size_t len, int64_t *out)
{
	*out = 0;
	unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
	bool ok = len >= 20 && digits(s, 4, &y) && s[4] == '-' && digits(s + 5, 2, &mo) &&
	          s[7] == '-' && digits(s + 8, 2, &d) && (s[10] == 'T' || s[10] == 't') &&
	          digits(s + 11, 2, &h) && s[13] == ':' && digits(s + 14, 2, &mi) &&
	          s[16] == ':' && digits(s + 17, 2, &sec);
	size_t i = 19;
	if (ok && i < len && s[i] == '.') {
		size_t start = ++i;
		while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 9)
			i++;
		ok = i > start;
	}
	int sign = 0;
	if (ok && i < len && (s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
		i++;
	} else if (ok && i + 6 == len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		ok = digits(s + i + 1, 2, &oh) && s[i + 3] == ':' && digits(s + i + 4, 2, &om) &&
		     oh <= 23 && om <= 59;
		i += 6;
	} else {
		ok = false;
	}
	ok = ok && i == len && y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 &&
	     d <= month_days(y, mo) && h <= 23 && mi <= 59 && sec <= 59;
	KMS_ENSURE(ok, KMS_INVALID_ARGUMENT,
	           "not an RFC 3339 time (write it as 2026-12-01T10:00:00Z)");
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	t -= sign * (int64_t)(oh * 3600 + om * 60);
	KMS_ENSURE(t >= 0, KMS_INVALID_ARGUMENT, "not an RFC 3339 time from 1970 on");
	*out = t;
	return KMS_OK;
}

void rfc3339_format(int64_t t, char out[static RFC3339_TEXT_SIZE])
{
	int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
	int64_t rem = t - days * 86400, y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	if (y < 0 || y > 9999) {
		snprintf(out, RFC3339_TEXT_SIZE, "%s", y < 0 ? "0000-01-01T00:00:00Z"
		                                              : "9999-12-31T23:59:59Z");
		return;
	}
	char buf[64];
	snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", (int)y, m % 100, d % 100,
	         (int)(rem / 3600 % 100), (int)(rem / 60 % 60), (int)(rem % 60));
	memcpy(out, buf, RFC3339_TEXT_SIZE - 1);
	out[RFC3339_TEXT_SIZE - 1] = '\0';
}

int64_t rfc3339_add_calendar(int64_t t, const char *unit, int64_t n)
{
	const int64_t limit = INT64_C(253402300799); /* 9999-12-31T23:59:59Z */
	if (n < 0 || t < 0 || t > limit)
		return INT64_MAX;
	if (!strcmp(unit, "DAY"))
		return n > (limit - t) / 86400 ? INT64_MAX : t + n * 86400;
	int64_t months;
	if (!strcmp(unit, "MONTH"))
		months = n;
	else if (!strcmp(unit, "YEAR"))
		months = n > 10000 ? 120001 : n * 12;
	else
		return INT64_MAX;
	if (months > 120000)
		return INT64_MAX;
	int64_t days = t / 86400, rem = t % 86400, y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	int64_t total = y * 12 + (m - 1) + months;
	int64_t ny = total / 12;
	unsigned nm = (unsigned)(total % 12) + 1;
	if (ny > 9999)
		return INT64_MAX;
	unsigned md = month_days(ny, nm);
	return days_from_civil(ny, nm, d > md ? md : d) * 86400 + rem;
}

int64_t rfc3339_period_start(int64_t t, const char *unit)
{
	if (t < 0)
		return 0;
	if (!strcmp(unit, "HOUR"))
		return t - t % 3600;
	if (!strcmp(unit, "DAY"))
		return t - t % 86400;
	int64_t y;
	unsigned m, d;
	civil_from_days(t / 86400, &y, &m, &d);
	if (!strcmp(unit, "MONTH"))
		return days_from_civil(y, m, 1) * 86400;
	if (!strcmp(unit, "YEAR"))
		return days_from_civil(y, 1, 1) * 86400;
	return 0;
}
