/*
 * kms-admin prints what kmsd sends: a key description with bidi overrides
 * (U+202E reverses what follows on a terminal), an ANSI escape, a C1
 * control and a tab, and tags with bidi isolates and marks, through the real
 * CLI (in-process) against a real kmsd. They used to reach the terminal raw
 * (C0 as '?', the rest untouched). Text and table output must show each as
 * a visible escape ("\u202e", "\u001b", "\u009b") and hold none of those
 * bytes; JSON output must parse back to the very strings stored, with every
 * one of them escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <kms/client.h>

#include "clients/cli/admin.h"
#include "tests/support/harness.h"

#define DESCRIPTION "pay\xe2\x80\xae" "lave\xe2\x80\xac \x1b[31mred\x07 c1\xc2\x9b tab\there"
#define TAG_KEY "owner\xe2\x81\xa6"
#define TAG_VALUE "x\xe2\x80\x8fy\xd8\x9c"

static harness H;
static char key_id[KMS_KEY_ID_MAX + 1];

/* Bytes no text output may hold: the raw controls above. */
static const char *const raw[] = {
	"\xe2\x80\xae", "\xe2\x80\xac", "\x1b", "\x07", "\xc2\x9b", "\xe2\x81\xa6",
	"\xe2\x80\x8f", "\xd8\x9c", "\t",
};

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = 10000 };
	kms_client *c;
	kms_error err;
	if (kms_client_open(&opts, &c, &err) != KMS_OK)
		return -1;
	kms_context_pair tag = { .key = TAG_KEY, .value = TAG_VALUE };
	kms_create_key_params params = { .description = DESCRIPTION, .tags = &tag, .n_tags = 1 };
	kms_key_metadata md;
	kms_status st = kms_create_key(c, &params, &md, &err);
	kms_client_close(c);
	if (st != KMS_OK) {
		fprintf(stderr, "create key: %s\n", err.message);
		return -1;
	}
	snprintf(key_id, sizeof key_id, "%s", md.key_id);
	kms_key_metadata_free(&md);
	return 0;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

/* kms-admin ARGS... --endpoint <kmsd>, in-process; its stdout. */
static char *admin(char **args)
{
	char *argv[16], *out = NULL, *err = NULL;
	size_t out_len, err_len;
	int argc = 0;
	argv[argc++] = ADMIN_PROG;
	for (; *args; args++)
		argv[argc++] = *args;
	argv[argc++] = "--endpoint";
	argv[argc++] = H.ipc_url;
	argv[argc] = NULL;
	FILE *o = open_memstream(&out, &out_len), *e = open_memstream(&err, &err_len);
	assert_true(o && e);
	int code = cli_main(ADMIN_PROG, ADMIN_ABOUT, admin_commands, argc, argv, o, e);
	fclose(o);
	fclose(e);
	if (code != CLI_EXIT_OK)
		fail_msg("exit %d\nstdout: %s\nstderr: %s", code, out, err);
	free(err);
	return out;
}

#define ADMIN(...) admin((char *[]){ __VA_ARGS__, NULL })

static void expect_escaped(const char *what, const char *out)
{
	printf("# %s:\n%s", what, out);
	for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
		if (strstr(out, raw[i]))
			fail_msg("%s: a raw control (#%zu) reached the output", what, i);
	const char *shown[] = { "\\u202e", "\\u202c", "\\u001b", "\\u0007", "\\u009b", "\\u0009" };
	for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
		if (!strstr(out, shown[i]))
			fail_msg("%s: no visible %s", what, shown[i]);
}

static void describe_text_escapes(void **state)
{
	(void)state;
	char *out = ADMIN("key", "describe", key_id);
	expect_escaped("key describe", out);
	assert_non_null(strstr(out, "owner\\u2066"));
	assert_non_null(strstr(out, "x\\u200fy\\u061c"));
	free(out);
}

static void list_table_escapes(void **state)
{
	(void)state;
	char *out = ADMIN("key", "list");
	expect_escaped("key list", out);
	free(out);
}

static void json_stays_valid_and_escaped(void **state)
{
	(void)state;
	char *out = ADMIN("--json", "key", "describe", key_id);
	for (size_t i = 0; i < sizeof raw / sizeof raw[0] - 1; i++) /* JSON indents, no tabs */
		if (strstr(out, raw[i]))
			fail_msg("JSON: a raw control (#%zu) reached the output: %s", i, out);
	assert_true(strstr(out, "\\u202e") || strstr(out, "\\u202E")); /* jansson's case */
	json_error_t jerr;
	json_t *doc = json_loads(out, 0, &jerr);
	if (!doc)
		fail_msg("not JSON (%s): %s", jerr.text, out);
	const char *description = json_string_value(json_object_get(doc, "description"));
	if (!description) /* the metadata may sit one level down */
		description = json_string_value(
		        json_object_get(json_object_get(doc, "key_metadata"), "description"));
	assert_non_null(description);
	assert_string_equal(description, DESCRIPTION);
	json_decref(doc);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(describe_text_escapes),
		cmocka_unit_test(list_table_escapes),
		cmocka_unit_test(json_stays_valid_and_escaped),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
