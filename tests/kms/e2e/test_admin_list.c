/*
 * kms-admin's list paging against a real kmsd: one page and its token, a
 * page token to go on from, --all gathering every page of keys and of
 * aliases (all of them, or one key's), and the hint on stderr when a text
 * list has more.
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

#define KEYS 5

static harness H;
static char key_ids[KEYS][KMS_KEY_ID_MAX + 1];

static int start(void **state)
{
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
	for (int i = 0; i < KEYS; i++) {
		char alias[32];
		snprintf(alias, sizeof alias, "alias/list-%d", i);
		kms_create_key_params params = { .description = "paging", .alias = alias };
		kms_key_metadata md;
		if (kms_create_key(c, &params, &md, &err) != KMS_OK) {
			fprintf(stderr, "create key: %s\n", err.message);
			kms_client_close(c);
			return -1;
		}
		snprintf(key_ids[i], sizeof key_ids[i], "%s", md.key_id);
		kms_key_metadata_free(&md);
	}
	kms_client_close(c);
	return 0;
}

static int stop(void **state)
{
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

struct run {
	int code;
	char *out;
	char *err;
};

/* Runs kms-admin ARGS... --endpoint <kmsd> in-process. */
static struct run admin_argv(char **args)
{
	char *argv[16];
	int argc = 0;
	argv[argc++] = ADMIN_PROG;
	for (; *args; args++)
		argv[argc++] = *args;
	argv[argc++] = "--endpoint";
	argv[argc++] = H.ipc_url;
	argv[argc] = NULL;
	struct run r;
	size_t out_len, err_len;
	FILE *out = open_memstream(&r.out, &out_len);
	FILE *err = open_memstream(&r.err, &err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.code = cli_main(ADMIN_PROG, ADMIN_ABOUT, admin_commands, argc, argv, out, err);
	fclose(out);
	fclose(err);
	if (r.code != CLI_EXIT_OK)
		fail_msg("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err);
	return r;
}

#define ADMIN(...) admin_argv((char *[]){ __VA_ARGS__, NULL })

/* The JSON list's items (under name) and its next_page_token (malloc'ed). */
static json_t *json_list(struct run r, const char *name, char **token)
{
	json_error_t jerr;
	json_t *doc = json_loads(r.out, 0, &jerr);
	if (!doc)
		fail_msg("not JSON (%s): %s", jerr.text, r.out);
	free(r.out);
	free(r.err);
	json_t *items = json_incref(json_object_get(doc, name));
	assert_true(json_is_array(items));
	*token = strdup(json_string_value(json_object_get(doc, "next_page_token")));
	json_decref(doc);
	return items;
}

static bool has_key(json_t *keys, const char *id)
{
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k)
		if (!strcmp(json_string_value(json_object_get(k, "key_id")), id))
			return true;
	return false;
}

static void key_pages_one_by_one_and_all(void **state)
{
	char *token;
	char *first_token;
	json_t *first = json_list(ADMIN("--json", "key", "list", "--limit", "2"), "keys",
	                          &first_token);
	assert_int_equal(json_array_size(first), 2);
	assert_true(first_token[0] != '\0');
	json_t *second = json_list(ADMIN("--json", "key", "list", "--limit", "2", "--page-token",
	                                 first_token), "keys", &token);
	free(first_token);
	assert_int_equal(json_array_size(second), 2);
	assert_false(has_key(second, json_string_value(json_object_get(
	                                     json_array_get(first, 0), "key_id"))));
	free(token);

	json_t *all = json_list(ADMIN("--json", "key", "list", "--limit", "2", "--all"), "keys",
	                        &token);
	assert_int_equal(json_array_size(all), KEYS);
	assert_string_equal(token, "");
	for (int i = 0; i < KEYS; i++)
		assert_true(has_key(all, key_ids[i]));
	free(token);
	json_decref(first);
	json_decref(second);
	json_decref(all);
}

static void alias_pages_all_and_of_one_key(void **state)
{
	char *token;
	json_t *all = json_list(ADMIN("--json", "alias", "list", "--limit", "2", "--all"),
	                        "aliases", &token);
	assert_int_equal(json_array_size(all), KEYS);
	assert_string_equal(token, "");
	free(token);
	json_t *one = json_list(ADMIN("--json", "alias", "list", "--key", key_ids[3], "--all"),
	                        "aliases", &token);
	assert_int_equal(json_array_size(one), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(one, 0),
	                                                      "alias_name")),
	                    "alias/list-3");
	free(token);
	json_decref(all);
	json_decref(one);
}

static void text_lists_hint_at_more(void **state)
{
	struct run r = ADMIN("key", "list", "--limit", "3");
	assert_non_null(strstr(r.err, "(more keys: use --all, or --page-token "));
	free(r.out);
	free(r.err);
	r = ADMIN("alias", "list", "--limit", "1");
	assert_non_null(strstr(r.err, "(more aliases: use --all, or --page-token "));
	assert_non_null(strstr(r.out, "alias/list-"));
	free(r.out);
	free(r.err);
	r = ADMIN("alias", "list", "--all");
	assert_null(strstr(r.err, "more aliases"));
	for (int i = 0; i < KEYS; i++)
		assert_non_null(strstr(r.out, key_ids[i]));
	free(r.out);
	free(r.err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_pages_one_by_one_and_all),
		cmocka_unit_test(alias_pages_all_and_of_one_key),
		cmocka_unit_test(text_lists_hint_at_more),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
