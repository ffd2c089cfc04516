/*
 * test_jwt_recipe: docs/jwt.md's commands, as written
 * there, against a real kmsd, and the tokens they make checked by a JOSE
 * library kms did not write (PyJWT, Debian's python3-jwt).
 *
 * - EdDSA: the page's ```sh block runs in bash with an ED25519 key behind
 *   alias/jwt-signer; its token and the PEM it wrote pass the page's
 *   jwt.decode line; the same token with another payload does not.
 * - ES256: the same block with "EdDSA" replaced by "ES256" and an ECC_P256
 *   key behind the alias, the page's DER to r || s conversion, then the
 *   page's jwt.decode line with algorithms=["ES256"].
 * The page's blocks are read from the file, so a change to the page that
 * breaks the recipe breaks this test.
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
#include <sys/stat.h>

#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define PYTHON "/usr/bin/python3"

static harness H;
static char g_dir[600];

static int setup(void **state)
{
	(void)state;
	if (!harness_start(&H, NULL))
		fail_msg("kmsd did not start; see %s", H.log);
	snprintf(g_dir, sizeof g_dir, "%s/jwt", getenv("KMS_TEST_TOKEN_DIR"));
	mkdir(g_dir, 0700);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	int code = harness_stop(&H);
	return code == 0 ? 0 : -1;
}

/* The body of the first fenced block of kind lang ("sh", "python") in the
 * page whose text contains needle; malloc'ed. */
static char *block(const char *page, const char *lang, const char *needle)
{
	char open[16];
	snprintf(open, sizeof open, "```%s\n", lang);
	for (const char *at = strstr(page, open); at; at = strstr(at + 1, open)) {
		const char *body = at + strlen(open);
		const char *end = strstr(body, "```\n");
		assert_non_null(end);
		char *text = strndup(body, (size_t)(end - body));
		assert_non_null(text);
		if (strstr(text, needle))
			return text;
		free(text);
	}
	fail_msg("docs/jwt.md has no ```%s block with \"%s\"", lang, needle);
	return NULL;
}

/* s with every "from" replaced by "to"; malloc'ed. */
static char *replace(const char *s, const char *from, const char *to)
{
	size_t n = 0, fl = strlen(from), tl = strlen(to);
	for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
		n++;
	char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1), *w = out;
	assert_non_null(out);
	for (const char *p = s, *q; (q = strstr(p, from)) || *p; p = q + fl) {
		if (!q) {
			strcpy(w, p);
			w += strlen(p);
			break;
		}
		memcpy(w, p, (size_t)(q - p));
		w += q - p;
		memcpy(w, to, tl);
		w += tl;
	}
	*w = '\0';
	return out;
}

static void write_file(const char *name, const char *text)
{
	char path[700];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void create_key(const char *spec_alias, Kms__KeySpec spec)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.key_spec = spec;
	ck.alias = (char *)(uintptr_t)spec_alias;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = harness_call(&H, &req);
	if (!r || r->status != KMS__STATUS__OK)
		fail_msg("CreateKey %s: %s", spec_alias, r ? r->message : "no reply");
	kms__response__free_unpacked(r, NULL);
}

/* Runs the sh block (with key and alg put in) in g_dir; leaves token and
 * jwt-signer.pem there. */
static void run_recipe(const char *page, const char *key, const char *alg)
{
	char *sh = block(page, "sh", "kms sign");
	char *with_key = replace(sh, "KEY=alias/jwt-signer", key);
	char *with_alg = replace(with_key, "\"alg\":\"EdDSA\"", alg);
	char script[8192];
	snprintf(script, sizeof script,
	         "set -euo pipefail\ncd '%s'\nexport PATH=\"$(dirname \"$KMS_TEST_KMS\"):$PATH\"\n"
	         "rm -f signing-input signature jwt-signer.pem token\n"
	         "%s\nprintf '%%s' \"$token\" > token\n",
	         g_dir, with_alg);
	write_file("recipe.sh", script);
	char path[700];
	snprintf(path, sizeof path, "%s/recipe.sh", g_dir);
	char endpoint[700];
	snprintf(endpoint, sizeof endpoint, "KMS_ENDPOINT=%s", H.ipc_url);
	const char *env[] = { endpoint, NULL };
	const char *args[] = { path, NULL };
	run_bin_options o = { .env = env, .wait_ms = 60000 };
	run_bin_result r = run_bin("/bin/bash", args, &o);
	if (r.code != 0)
		fail_msg("docs/jwt.md's sh block (%s) exited %d: %s%s", alg, r.code, r.out, r.err);
	run_bin_free(&r);
	free(sh);
	free(with_key);
	free(with_alg);
}

/* Runs python (the page's lines and ours) in g_dir; its exit code. */
static int python(const char *program, char **err)
{
	write_file("check.py", program);
	run_bin_options o = { .wait_ms = 60000 };
	char cwd_script[1600];
	snprintf(cwd_script, sizeof cwd_script, "cd '%s' && exec " PYTHON " check.py", g_dir);
	const char *sh_args[] = { "-c", cwd_script, NULL };
	run_bin_result r = run_bin("/bin/sh", sh_args, &o);
	int code = r.code;
	*err = strdup(r.err);
	run_bin_free(&r);
	return code;
}

static char *page_text(void)
{
	const char *path = getenv("KMS_TEST_JWT_DOC");
	assert_non_null(path);
	size_t len;
	char *page = harness_read_file(path, &len);
	assert_non_null(page);
	return page;
}

/* The verification: the page's decode line, for a token read from the
 * file the recipe wrote (changed first when tamper). */
static char *verify_program(const char *page, const char *alg, const char *prelude, bool tamper)
{
	char *decode = block(page, "python", "jwt.decode");
	char *with_alg = replace(decode, "algorithms=[\"EdDSA\"]", alg);
	char *program = malloc(8192);
	assert_non_null(program);
	snprintf(program, 8192,
	         "import base64, json\n"
	         "token = open('token').read()\n"
	         "%s\n"
	         "if %s:\n"
	         "    h, p, s = token.split('.')\n"
	         "    body = json.loads(base64.urlsafe_b64decode(p + '=' * (-len(p) %% 4)))\n"
	         "    body['sub'] = 'user-43'\n"
	         "    p = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b'=').decode()\n"
	         "    token = h + '.' + p + '.' + s\n"
	         "%s\n"
	         "assert claims['sub'] == 'user-42', claims\n",
	         prelude, tamper ? "True" : "False", with_alg);
	free(decode);
	free(with_alg);
	return program;
}

static void check_tokens(const char *page, const char *alg, const char *prelude)
{
	char *err = NULL;
	char *good = verify_program(page, alg, prelude, false);
	int code = python(good, &err);
	if (code != 0)
		fail_msg("PyJWT does not accept the recipe's token (%s): %s", alg, err);
	free(err);
	char *bad = verify_program(page, alg, prelude, true);
	code = python(bad, &err);
	if (code == 0 || !strstr(err, "InvalidSignatureError"))
		fail_msg("PyJWT accepts a token with a changed payload (%s), or failed otherwise: %s",
		         alg, err);
	free(err);
	free(good);
	free(bad);
}

static void eddsa(void **state)
{
	(void)state;
	char *page = page_text();
	create_key("alias/jwt-signer", KMS__KEY_SPEC__ED25519);
	run_recipe(page, "KEY=alias/jwt-signer", "\"alg\":\"EdDSA\"");
	check_tokens(page, "algorithms=[\"EdDSA\"]", "");
	free(page);
}

static void es256(void **state)
{
	(void)state;
	char *page = page_text();
	create_key("alias/jwt-es256", KMS__KEY_SPEC__ECC_P256);
	run_recipe(page, "KEY=alias/jwt-es256", "\"alg\":\"ES256\"");
	/* The page's conversion of kms's DER signature, then the token's third
	 * part replaced with the JOSE form. */
	char *convert = block(page, "python", "decode_dss_signature");
	char prelude[4096];
	snprintf(prelude, sizeof prelude,
	         "%s\n"
	         "h, p, _ = token.split('.')\n"
	         "token = h + '.' + p + '.' + base64.urlsafe_b64encode(raw).rstrip(b'=').decode()\n",
	         convert);
	check_tokens(page, "algorithms=[\"ES256\"]", prelude);
	free(convert);
	free(page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(eddsa),
		cmocka_unit_test(es256),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
