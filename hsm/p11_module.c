/*
 * p11_module.c: loading the module, finding the token, reading the PIN and
 * logging in; hsm_open and hsm_close.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/secmem.h>

#include "common/log.h"
#include "hsm/p11_internal.h"

#ifndef KMS_SOFTHSM_MODULE
#define KMS_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

/* A token label is 32 bytes, blank-padded, in CK_TOKEN_INFO. */
#define TOKEN_LABEL_LEN 32

hsm_id_text hsm_id_to_text(const hsm_object_id *id)
{
	static const char hex[] = "0123456789abcdef";
	hsm_id_text t = { { 0 } };
	size_t len = id && id->len <= HSM_ID_MAX ? id->len : 0;
	bool printable = len > 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = id->bytes[i];
		if (b < 0x21 || b > 0x7e || b == '"' || b == '\\')
			printable = false;
	}
	size_t n = 0;
	if (printable) {
		t.s[n++] = '"';
		memcpy(t.s + n, id->bytes, len);
		n += len;
		t.s[n++] = '"';
	} else {
		for (size_t i = 0; i < len; i++) {
			t.s[n++] = hex[id->bytes[i] >> 4];
			t.s[n++] = hex[id->bytes[i] & 0xf];
		}
	}
	t.s[n] = '\0';
	return t;
}

kms_status hsm_id_check(const hsm_object_id *id)
{
	KMS_ENSURE(id != NULL, KMS_INVALID_ARGUMENT, "hsm: object id is NULL");
	KMS_ENSURE(id->len >= 1 && id->len <= HSM_ID_MAX, KMS_INVALID_ARGUMENT,
	           "hsm: object id is %zu bytes (1..%d allowed)", id->len, HSM_ID_MAX);
	return KMS_OK;
}

/* --- the PIN --- */

void hsm_pin_free(hsm_pin *pin)
{
	kms_secure_free(pin->bytes);
	pin->bytes = NULL;
	pin->len = 0;
}

/* Keeps the first line of raw[0..len) as the PIN: strips "\n" or "\r\n". */
static kms_status pin_take_line(hsm_pin *pin, const char *raw, size_t len)
{
	const char *eol = memchr(raw, '\n', len);
	if (eol)
		len = (size_t)(eol - raw);
	if (len > 0 && raw[len - 1] == '\r')
		len--;
	KMS_ENSURE(len > 0, KMS_HSM_UNAVAILABLE, "hsm: %s holds an empty PIN", pin->source);
	KMS_ENSURE(len <= HSM_PIN_MAX, KMS_HSM_UNAVAILABLE,
	           "hsm: %s holds a PIN longer than %d bytes", pin->source, HSM_PIN_MAX);
	KMS_ENSURE(memchr(raw, '\0', len) == NULL, KMS_HSM_UNAVAILABLE,
	           "hsm: %s holds a PIN with a NUL byte", pin->source);
	pin->bytes = kms_secure_alloc(len + 1);
	KMS_ENSURE(pin->bytes != NULL, KMS_INTERNAL, "hsm: out of secure memory for the PIN");
	memcpy(pin->bytes, raw, len);
	pin->bytes[len] = '\0';
	pin->len = len;
	return KMS_OK;
}

static kms_status pin_from_file(const char *path, hsm_pin *pin)
{
	/* Room for the longest PIN, "\r\n" and one byte to tell "too long". */
	enum { RAW_CAP = HSM_PIN_MAX + 3 };
	kms_status st = KMS_OK;
	char *raw = NULL;
	size_t got = 0;

	snprintf(pin->source, sizeof pin->source, "the PIN file %s", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: cannot open the PIN file %s: %s", path,
		                strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: cannot stat the PIN file %s: %s", path,
		              strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: the PIN file %s is not a regular file", path);
		goto out;
	}
	if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
		              "hsm: the PIN file %s has permissions %04o: group and others must have "
		              "no access (chmod 600)",
		              path, (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	raw = kms_secure_alloc(RAW_CAP);
	if (!raw) {
		st = KMS_FAIL(KMS_INTERNAL, "hsm: out of secure memory for the PIN");
		goto out;
	}
	while (got < RAW_CAP) {
		ssize_t n = read(fd, raw + got, RAW_CAP - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: cannot read the PIN file %s: %s", path,
			              strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	st = pin_take_line(pin, raw, got);
out:
	kms_secure_free(raw);
	close(fd);
	return st;
}

static kms_status pin_from_env(const char *name, hsm_pin *pin)
{
	snprintf(pin->source, sizeof pin->source, "the environment variable %s", name);
	const char *value = getenv(name);
	KMS_ENSURE(value != NULL, KMS_HSM_UNAVAILABLE,
	           "hsm: the PIN variable %s is not set in the environment", name);
	size_t len = strnlen(value, HSM_PIN_MAX + 3);
	return pin_take_line(pin, value, len);
}

kms_status hsm_pin_load(const hsm_config *config, hsm_pin *pin)
{
	memset(pin, 0, sizeof *pin);
	bool has_file = config->pin_file && config->pin_file[0];
	bool has_env = config->pin_env && config->pin_env[0];
	KMS_ENSURE(!(has_file && has_env), KMS_INVALID_ARGUMENT,
	           "hsm: both pin_file and pin_env are set: choose one");
	KMS_ENSURE(has_file || has_env, KMS_INVALID_ARGUMENT,
	           "hsm: no PIN configured: set pin_file or pin_env");
	return has_file ? pin_from_file(config->pin_file, pin) : pin_from_env(config->pin_env, pin);
}

/* The PIN goes only to the token kmsd opened: another one with the same
 * label behind s's slot (a swapped device under the same slot id) is
 * refused before C_Login. Before the first find, there is nothing to
 * compare with (hsm_open logs in only after token_find). */
#define TOKEN_READ_TRIES 10

static kms_status token_is_ours(hsm *h, CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO session;
	CK_TOKEN_INFO token;
	CK_RV rv;
	/* SoftHSM's file store answers CKR_GENERAL_ERROR to a token read that
	 * meets another process rewriting the token's file (replicas sharing
	 * one token directory start at once, in the tests): a few tries
	 * 50 ms apart ride it out. An error that lasts fails as before. */
	for (int tries = 1;; tries++) {
		rv = h->p11->C_GetSessionInfo(s, &session);
		if (rv == CKR_OK)
			rv = h->p11->C_GetTokenInfo(session.slotID, &token);
		if (rv != CKR_GENERAL_ERROR || tries == TOKEN_READ_TRIES)
			break;
		struct timespec pause = { .tv_sec = 0, .tv_nsec = 50 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
	if (rv != CKR_OK)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: reading token \"%s\" before login -> %s",
		                h->token_label, hsm_rv_name(rv));
	if (memcmp(token.manufacturerID, h->token_manufacturer, sizeof h->token_manufacturer) ||
	    memcmp(token.model, h->token_model, sizeof h->token_model) ||
	    memcmp(token.serialNumber, h->token_serial, sizeof h->token_serial))
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: the token in slot %lu is serial %.16s, not "
		                "the token \"%s\" kmsd started on (serial %.16s): not logging in to "
		                "it; restart kmsd to accept another token",
		                (unsigned long)session.slotID, (const char *)token.serialNumber,
		                h->token_label, (const char *)h->token_serial);
	return KMS_OK;
}

kms_status hsm_login(hsm *h, CK_SESSION_HANDLE s)
{
	KMS_GUARD(token_is_ours(h, s));
	pthread_mutex_lock(&h->login_lock);
	CK_RV rv = h->p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)h->pin.bytes, h->pin.len);
	pthread_mutex_unlock(&h->login_lock);
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return KMS_OK;
	const char *hint = "";
	switch (rv) {
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		hint = "check ";
		break;
	case CKR_PIN_LOCKED:
		hint = "the user PIN is locked (reset it with the SO PIN); it came from ";
		break;
	case CKR_PIN_EXPIRED:
		hint = "the user PIN has expired; it came from ";
		break;
	default:
		hint = "with the PIN from ";
		break;
	}
	return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_Login on token \"%s\" -> %s: %s%s",
	                h->token_label, hsm_rv_name(rv), hint, h->pin.source);
}

/* --- the module and the token --- */

static kms_status module_load(hsm *h, const char *path)
{
	h->module_path = strdup(path);
	KMS_ENSURE(h->module_path != NULL, KMS_INTERNAL, "hsm: out of memory");
	/*
	 * RTLD_NODELETE: the module stays mapped after dlclose. Modules keep
	 * process-wide state (locks, OpenSSL hooks, atexit handlers) that does
	 * not survive being unmapped and mapped again, and leak reports inside
	 * an unmapped module cannot be attributed.
	 */
	h->module = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!h->module) {
		const char *why = dlerror();
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: cannot load PKCS#11 module %s: %s", path,
		                why ? why : "unknown dlopen error");
	}
	CK_C_GetFunctionList get_list;
	*(void **)&get_list = dlsym(h->module, "C_GetFunctionList");
	KMS_ENSURE(get_list != NULL, KMS_HSM_UNAVAILABLE,
	           "hsm: %s is not a PKCS#11 module (no C_GetFunctionList)", path);
	CK_RV rv = get_list(&h->p11);
	KMS_ENSURE(rv == CKR_OK && h->p11 != NULL, KMS_HSM_UNAVAILABLE,
	           "hsm: C_GetFunctionList in %s -> %s", path, hsm_rv_name(rv));
	KMS_ENSURE(h->p11->version.major == 2 || h->p11->version.major == 3, KMS_HSM_UNAVAILABLE,
	           "hsm: module %s speaks PKCS#11 %u.%u; 2.x or 3.x needed", path,
	           h->p11->version.major, h->p11->version.minor);

	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	rv = h->p11->C_Initialize(&args);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in this process owns the module's life: leave it be at close. */
		h->finalize_on_close = false;
		return KMS_OK;
	}
	KMS_ENSURE(rv == CKR_OK, KMS_HSM_UNAVAILABLE, "hsm: C_Initialize of %s -> %s", path,
	           hsm_rv_name(rv));
	h->finalize_on_close = true;
	return KMS_OK;
}

/* label as CK_TOKEN_INFO holds it: blank-padded to 32 bytes. */
static void pad_label(const char *label, CK_UTF8CHAR padded[TOKEN_LABEL_LEN])
{
	size_t len = strlen(label);
	memset(padded, ' ', TOKEN_LABEL_LEN);
	memcpy(padded, label, len);
}

kms_status hsm_no_token(const char *label, const char *module_path)
{
	const char *base = strrchr(module_path, '/');
	base = base ? base + 1 : module_path;
	if (strstr(base, "softhsm") == NULL)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: no token labelled \"%s\" in module %s: "
		                "create it or fix token_label", label, module_path);
	const char *conf = getenv("SOFTHSM2_CONF");
	if (!conf || !conf[0])
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: no token labelled \"%s\" in module %s, "
		                "and SOFTHSM2_CONF is not set: set it to the token's softhsm2.conf "
		                "(dev: var/hsm/softhsm2.conf), or fix token_label", label, module_path);
	/* The path last: a message cut at KMS_ERROR_MAX loses only its end. */
	return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: no token labelled \"%s\" in module %s: create "
	                "it, fix token_label, or point SOFTHSM2_CONF at the token's softhsm2.conf "
	                "(now %s)", label, module_path, conf);
}

/* Finds the one initialized, usable token labelled h->token_label: its
 * slot and info into *slot and *found. Changes nothing in h. */
static kms_status token_locate(hsm *h, CK_SLOT_ID *slot, CK_TOKEN_INFO *found)
{
	kms_status st = KMS_OK;
	CK_SLOT_ID *slots = NULL;
	CK_ULONG count = 0;
	CK_UTF8CHAR wanted[TOKEN_LABEL_LEN];
	unsigned matches = 0;

	pad_label(h->token_label, wanted);
	CK_RV rv = h->p11->C_GetSlotList(CK_TRUE, NULL, &count);
	if (rv != CKR_OK) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_GetSlotList in %s -> %s", h->module_path,
		              hsm_rv_name(rv));
		goto out;
	}
	/* Slots may appear between the two calls: ask again when the list grew. */
	for (int tries = 0; tries < 3; tries++) {
		free(slots);
		slots = calloc(count ? count : 1, sizeof *slots);
		if (!slots) {
			st = KMS_FAIL(KMS_INTERNAL, "hsm: out of memory");
			goto out;
		}
		rv = h->p11->C_GetSlotList(CK_TRUE, slots, &count);
		if (rv != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv != CKR_OK) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_GetSlotList in %s -> %s", h->module_path,
		              hsm_rv_name(rv));
		goto out;
	}
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (h->p11->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue; /* a token pulled out meanwhile is not ours */
		if (memcmp(info.label, wanted, TOKEN_LABEL_LEN) != 0)
			continue;
		if (matches++ == 0) {
			*slot = slots[i];
			*found = info;
		}
	}
	if (matches == 0) {
		st = hsm_no_token(h->token_label, h->module_path);
		goto out;
	}
	/* Logging in to the wrong one of two tokens would be worse than failing. */
	if (matches > 1) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
		              "hsm: %u tokens labelled \"%s\" in module %s: labels must be unique",
		              matches, h->token_label, h->module_path);
		goto out;
	}
	if (!(found->flags & CKF_TOKEN_INITIALIZED) || !(found->flags & CKF_USER_PIN_INITIALIZED)) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
		              "hsm: token \"%s\" has no user PIN set: initialize it first",
		              h->token_label);
		goto out;
	}
	if (found->flags & CKF_USER_PIN_LOCKED) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
		              "hsm: token \"%s\": the user PIN is locked (reset it with the SO PIN)",
		              h->token_label);
		goto out;
	}
out:
	free(slots);
	return st;
}

static kms_status token_find(hsm *h)
{
	CK_SLOT_ID slot = 0;
	CK_TOKEN_INFO info;
	KMS_GUARD(token_locate(h, &slot, &info));
	atomic_store(&h->slot, slot);
	memcpy(h->token_manufacturer, info.manufacturerID, sizeof h->token_manufacturer);
	memcpy(h->token_model, info.model, sizeof h->token_model);
	memcpy(h->token_serial, info.serialNumber, sizeof h->token_serial);
	return KMS_OK;
}

kms_status hsm_slot_refind(hsm *h, CK_SLOT_ID stale)
{
	pthread_mutex_lock(&h->refind_lock);
	kms_status st = KMS_OK;
	if (atomic_load(&h->slot) != stale)
		goto out; /* another thread found it meanwhile */
	CK_SLOT_ID slot = 0;
	CK_TOKEN_INFO info;
	st = token_locate(h, &slot, &info);
	if (st != KMS_OK)
		goto out;
	/* The same label on another token (a stand-in, a restored copy) is not
	 * the token kmsd's keys were made in and checked against at start. */
	if (memcmp(info.manufacturerID, h->token_manufacturer, sizeof h->token_manufacturer) ||
	    memcmp(info.model, h->token_model, sizeof h->token_model) ||
	    memcmp(info.serialNumber, h->token_serial, sizeof h->token_serial)) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: the token labelled \"%s\" now in slot %lu "
		              "is serial %.16s, not the token kmsd started on (serial %.16s): "
		              "refusing it; restart kmsd to accept another token", h->token_label,
		              (unsigned long)slot, (const char *)info.serialNumber,
		              (const char *)h->token_serial);
		goto out;
	}
	atomic_store(&h->slot, slot);
	hsm_cache_clear(&h->cache);
	kms_log("warn", "hsm: token \"%s\" is back, in slot %lu (was %lu): opening sessions "
	        "there", h->token_label, (unsigned long)slot, (unsigned long)stale);
out:
	pthread_mutex_unlock(&h->refind_lock);
	return st;
}

/* Undoes whatever part of hsm_open got done. */
static void hsm_teardown(hsm *h)
{
	/* The cache's objects and session first: they need the module. */
	if (h->p11)
		hsm_keycache_free(h);
	if (h->p11 && h->finalize_on_close) {
		/* C_Finalize closes every session and logs out; log out explicitly first. */
		hsm_sessions_logout(h);
		hsm_sessions_close(h);
		(void)h->p11->C_Finalize(NULL);
	} else {
		/* The module is someone else's: close only what is ours. */
		hsm_sessions_close(h);
	}
	if (h->module)
		dlclose(h->module);
	hsm_pin_free(&h->pin);
	hsm_keycache_free(h); /* (only memory left, when the module never loaded) */
	hsm_cache_free(&h->cache);
	pthread_mutex_destroy(&h->login_lock);
	pthread_mutex_destroy(&h->create_lock);
	pthread_mutex_destroy(&h->sessions_lock);
	pthread_mutex_destroy(&h->refind_lock);
	free(h->module_path);
	free(h);
}

kms_status hsm_open(const hsm_config *config, hsm **out)
{
	kms_status st;

	KMS_ENSURE(out != NULL, KMS_INVALID_ARGUMENT, "hsm: hsm_open without an out pointer");
	*out = NULL;
	KMS_ENSURE(config != NULL, KMS_INVALID_ARGUMENT, "hsm: hsm_open without a config");
	KMS_ENSURE(config->token_label && config->token_label[0], KMS_INVALID_ARGUMENT,
	           "hsm: token_label is required");
	KMS_ENSURE(strlen(config->token_label) <= TOKEN_LABEL_LEN, KMS_INVALID_ARGUMENT,
	           "hsm: token_label \"%.40s...\" is longer than %d bytes", config->token_label,
	           TOKEN_LABEL_LEN);

	hsm *h = calloc(1, sizeof *h);
	KMS_ENSURE(h != NULL, KMS_INTERNAL, "hsm: out of memory");
	pthread_mutex_init(&h->login_lock, NULL);
	pthread_mutex_init(&h->create_lock, NULL);
	pthread_mutex_init(&h->sessions_lock, NULL);
	pthread_mutex_init(&h->refind_lock, NULL);
	snprintf(h->token_label, sizeof h->token_label, "%s", config->token_label);
	KMS_GUARD_OUT(st, hsm_cache_init(&h->cache));
	KMS_GUARD_OUT(st, hsm_keycache_init(h));
	KMS_GUARD_OUT(st, hsm_sessions_init(h));

	const char *path = config->module_path && config->module_path[0] ? config->module_path
	                                                                 : KMS_SOFTHSM_MODULE;
	KMS_GUARD_OUT(st, module_load(h, path));
	KMS_GUARD_OUT(st, token_find(h));
	KMS_GUARD_OUT(st, hsm_pin_load(config, &h->pin));
	/* Opening this thread's session logs in: a wrong PIN shows up here. */
	CK_SESSION_HANDLE s;
	KMS_GUARD_OUT(st, hsm_session_get(h, &s));
	*out = h;
	return KMS_OK;
out:
	hsm_teardown(h);
	return st;
}

void hsm_close(hsm *h)
{
	if (h)
		hsm_teardown(h);
}

const char *hsm_token_label(const hsm *h)
{
	return h->token_label;
}
