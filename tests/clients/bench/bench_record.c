/*
 * bench_record.c: kms-bench's JSON line, read back by its smokes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/clients/bench/bench_record.h"
#include "tests/support/harness.h"

json_t *bench_record_take(const char *path)
{
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	assert_non_null(text);
	assert_true(len > 1 && text[len - 1] == '\n');
	text[len - 1] = '\0';
	char *line = strrchr(text, '\n');
	line = line ? line + 1 : text;
	json_error_t jerr;
	json_t *record = json_loads(line, 0, &jerr);
	if (!record)
		fail_msg("not JSON (%s): %s", jerr.text, line);
	/* One line per run: nothing but the record on it. */
	assert_null(strchr(line, '\n'));
	free(text);
	assert_int_equal(truncate(path, 0), 0);
	return record;
}

json_int_t bench_record_int(json_t *record, const char *name)
{
	json_t *v = json_object_get(record, name);
	if (!json_is_integer(v))
		fail_msg("field %s is not an integer", name);
	return json_integer_value(v);
}

double bench_record_real(json_t *record, const char *name)
{
	json_t *v = json_object_get(record, name);
	if (!json_is_number(v))
		fail_msg("field %s is not a number", name);
	return json_number_value(v);
}

const char *bench_record_str(json_t *record, const char *name)
{
	json_t *v = json_object_get(record, name);
	if (!json_is_string(v))
		fail_msg("field %s is not a string", name);
	return json_string_value(v);
}
