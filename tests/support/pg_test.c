#include "tests/support/pg_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pg_test_password(char *out, size_t cap)
{
	const char *path = getenv("KMS_TEST_PG_PASSWORD_FILE");
	FILE *f = path ? fopen(path, "r") : NULL;
	if (!f || cap == 0) {
		fprintf(stderr, "cannot read KMS_TEST_PG_PASSWORD_FILE (run under "
		                "tests/support/with-postgres)\n");
		if (f)
			fclose(f);
		return false;
	}
	size_t n = fread(out, 1, cap - 1, f);
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return true;
}
