/*
 * bench_record.h: what kms-bench's smokes read back: the JSON line a run
 * appended to its --json file (docs/kms-bench.md, "The JSON line"), and
 * its fields, each of its documented type or the test fails. Include after
 * <cmocka.h>.
 */
#ifndef KMS_TESTS_BENCH_RECORD_H
#define KMS_TESTS_BENCH_RECORD_H

#include <jansson.h>

/* The last line of the file at path, parsed (one record, alone on its
 * line); the file is then emptied for the next run. */
json_t *bench_record_take(const char *path);

json_int_t bench_record_int(json_t *record, const char *name);
double bench_record_real(json_t *record, const char *name);
const char *bench_record_str(json_t *record, const char *name);

#endif
