/*
 * fuzz_credentials: the credentials-file parser (kms_credentials_parse,
 * docs/request-signing.md "Credentials file") over any bytes a file may
 * hold.
 *
 * Invariants:
 *   - it returns KMS_OK, KMS_INVALID_ARGUMENT or (out of secure memory)
 *     KMS_INTERNAL; unless KMS_OK the result is zeroed;
 *   - a refusal's message is one line of printable ASCII that holds no run
 *     of 12 hex digits: no piece of a secret is ever repeated;
 *   - on KMS_OK the input is at most 4096 bytes with no NUL or CR, the id
 *     is "AK" and 20 of [A-Z2-7], the principal 0..63 of [A-Za-z0-9._-],
 *     and the canonical text of what was read parses to the same values.
 */
#include <stdio.h>
#include <string.h>

#include <kms/client.h>

#include "tests/support/fuzz.h"

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static void check_message(const char *m)
{
	size_t run = 0;
	FUZZ_CHECK(m[0] != '\0');
	for (const char *p = m; *p; p++) {
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
		run = is_hex(*p) ? run + 1 : 0;
		FUZZ_CHECK(run < 12);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kms_credentials c;
	kms_error err;
	kms_status st = kms_credentials_parse((const char *)data, size, NULL, &c, &err);
	FUZZ_CHECK(st == KMS_OK || st == KMS_INVALID_ARGUMENT || st == KMS_INTERNAL);
	if (st != KMS_OK) {
		FUZZ_CHECK(!c.secret && !c.access_key_id[0] && !c.principal[0]);
		check_message(err.message);
		return 0;
	}
	FUZZ_CHECK(size <= KMS_CREDENTIALS_FILE_MAX);
	FUZZ_CHECK(!memchr(data, '\0', size) && !memchr(data, '\r', size));
	FUZZ_CHECK(c.secret && strlen(c.access_key_id) == KMS_ACCESS_KEY_ID_LEN &&
	           !strncmp(c.access_key_id, "AK", 2));
	for (size_t i = 2; i < KMS_ACCESS_KEY_ID_LEN; i++)
		FUZZ_CHECK((c.access_key_id[i] >= 'A' && c.access_key_id[i] <= 'Z') ||
		           (c.access_key_id[i] >= '2' && c.access_key_id[i] <= '7'));
	FUZZ_CHECK(strlen(c.principal) <= KMS_PRINCIPAL_NAME_MAX);
	FUZZ_CHECK(strspn(c.principal, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                               "0123456789._-") == strlen(c.principal));

	/* What was read, written out canonically, reads the same. */
	char text[256];
	int n = snprintf(text, sizeof text, "%s%s%saccess_key_id = %s\nsecret = ",
	                 c.principal[0] ? "principal = " : "", c.principal,
	                 c.principal[0] ? "\n" : "", c.access_key_id);
	FUZZ_CHECK(n > 0 && (size_t)n + 2 * KMS_SIGN_SECRET_LEN + 2 < sizeof text);
	for (int i = 0; i < KMS_SIGN_SECRET_LEN; i++)
		n += snprintf(text + n, sizeof text - (size_t)n, "%02x", c.secret[i]);
	text[n++] = '\n';
	kms_credentials again;
	FUZZ_CHECK(kms_credentials_parse(text, (size_t)n, NULL, &again, &err) == KMS_OK);
	FUZZ_CHECK(!strcmp(again.principal, c.principal) &&
	           !strcmp(again.access_key_id, c.access_key_id) &&
	           !memcmp(again.secret, c.secret, KMS_SIGN_SECRET_LEN));
	kms_wipe(text, sizeof text);
	kms_credentials_free(&again);
	kms_credentials_free(&c);
	return 0;
}
