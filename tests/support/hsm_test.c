#include "tests/support/hsm_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *env_required(const char *name)
{
	const char *value = getenv(name);
	if (!value || !value[0])
		fail_msg("%s is not set: run this test through tests/support/with-token", name);
	return value;
}

test_env test_env_get(void)
{
	test_env env = {
		.module = env_required("KMS_TEST_MODULE"),
		.label = env_required("KMS_TEST_TOKEN_LABEL"),
		.pin_file = env_required("KMS_TEST_PIN_FILE"),
		.token_dir = env_required("KMS_TEST_TOKEN_DIR"),
	};
	(void)env_required("SOFTHSM2_CONF");
	return env;
}

hsm_config test_config(void)
{
	test_env env = test_env_get();
	hsm_config config = {
		.module_path = env.module,
		.token_label = env.label,
		.pin_file = env.pin_file,
	};
	return config;
}

hsm *test_open(void)
{
	hsm_config config = test_config();
	hsm *h = NULL;
	kms_status st = hsm_open(&config, &h);
	if (st != KMS_OK)
		fail_msg("hsm_open: %s: %s", kms_status_name(st), kms_error_message());
	assert_non_null(h);
	return h;
}

hsm_object_id test_id(const char *text)
{
	hsm_object_id id = { .len = strlen(text) };
	assert_true(id.len <= HSM_ID_MAX);
	memcpy(id.bytes, text, id.len);
	return id;
}

void test_assert_message(const char *needle, ...)
{
	const char *msg = kms_error_message();
	va_list ap;

	if (strchr(msg, '\n'))
		fail_msg("message is not one line: %s", msg);
	va_start(ap, needle);
	for (const char *n = needle; n; n = va_arg(ap, const char *)) {
		if (!strstr(msg, n)) {
			va_end(ap);
			fail_msg("message lacks \"%s\": %s", n, msg);
		}
	}
	va_end(ap);
}

const char *test_pin(void)
{
	static char pin[300];
	FILE *f = fopen(test_env_get().pin_file, "r");
	assert_non_null(f);
	assert_non_null(fgets(pin, sizeof pin, f));
	fclose(f);
	pin[strcspn(pin, "\r\n")] = '\0';
	assert_true(pin[0] != '\0');
	return pin;
}

void test_write_file(char *path, size_t path_cap, const char *name, const char *content,
                     mode_t mode)
{
	int n = snprintf(path, path_cap, "%s/%s", test_env_get().token_dir, name);
	assert_true(n > 0 && (size_t)n < path_cap);
	(void)unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	size_t len = strlen(content);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	/* fchmod, not the open mode: the umask must not weaken the test. */
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

void test_raw_open(test_raw *raw)
{
	test_env env = test_env_get();
	memset(raw, 0, sizeof *raw);
	raw->module = dlopen(env.module, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(raw->module);
	CK_C_GetFunctionList get_list;
	*(void **)&get_list = dlsym(raw->module, "C_GetFunctionList");
	assert_non_null(get_list);
	assert_int_equal(get_list(&raw->p11), CKR_OK);
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_RV rv = raw->p11->C_Initialize(&args);
	assert_true(rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);

	CK_SLOT_ID slots[16];
	CK_ULONG count = 16;
	assert_int_equal(raw->p11->C_GetSlotList(CK_TRUE, slots, &count), CKR_OK);
	bool found = false;
	for (CK_ULONG i = 0; i < count && !found; i++) {
		CK_TOKEN_INFO info;
		assert_int_equal(raw->p11->C_GetTokenInfo(slots[i], &info), CKR_OK);
		size_t len = strlen(env.label);
		if (memcmp(info.label, env.label, len) == 0 &&
		    (len == sizeof info.label || info.label[len] == ' ')) {
			raw->slot = slots[i];
			found = true;
		}
	}
	assert_true(found);
	assert_int_equal(raw->p11->C_OpenSession(raw->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	                                         NULL, NULL, &raw->session),
	                 CKR_OK);
}

void test_raw_close(test_raw *raw)
{
	if (raw->p11 && raw->session != CK_INVALID_HANDLE)
		(void)raw->p11->C_CloseSession(raw->session);
	if (raw->module)
		dlclose(raw->module);
	memset(raw, 0, sizeof *raw);
}

CK_OBJECT_HANDLE test_raw_find(test_raw *raw, const hsm_object_id *id, CK_OBJECT_CLASS cls)
{
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_ID, (void *)(uintptr_t)id->bytes, id->len },
		{ CKA_CLASS, &cls, sizeof cls },
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG count = 0;
	assert_int_equal(raw->p11->C_FindObjectsInit(raw->session, tmpl, 2), CKR_OK);
	assert_int_equal(raw->p11->C_FindObjects(raw->session, found, 2, &count), CKR_OK);
	assert_int_equal(raw->p11->C_FindObjectsFinal(raw->session), CKR_OK);
	assert_int_equal(count, 1);
	return found[0];
}

bool test_raw_bool(test_raw *raw, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL value = 0x55;
	CK_ATTRIBUTE attr = { type, &value, sizeof value };
	assert_int_equal(raw->p11->C_GetAttributeValue(raw->session, object, &attr, 1), CKR_OK);
	assert_int_equal(attr.ulValueLen, sizeof value);
	assert_true(value == CK_TRUE || value == CK_FALSE);
	return value == CK_TRUE;
}
