/*
 * log.h: operational log lines and clocks, for kmsd and anything below it.
 *
 * Lines go to stderr (systemd's journal takes them from there) as
 * "<program>: <level>: <message>", one write(2) per line so lines from
 * different threads never interleave. Never pass secret bytes: a log line is
 * read by operators and kept for years.
 */
#ifndef KMS_COMMON_LOG_H
#define KMS_COMMON_LOG_H

#include <stdint.h>

/* One line to stderr, cut at KMS_LOG_LINE_MAX bytes. Thread-safe; never
 * blocks on anything but the write itself. <program> is the process's short
 * name ("kmsd"). */
void kms_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KMS_LOG_LINE_MAX 512

/* Wall-clock unix seconds (what audit entries and key metadata record). */
int64_t kms_now(void);

/* Wall-clock unix microseconds (audit entry times). */
int64_t kms_now_us(void);

/* A monotonic microsecond clock, for latencies and deadlines. */
uint64_t kms_monotonic_us(void);

#endif
