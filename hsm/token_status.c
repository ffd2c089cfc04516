/*
 * token_status.c: hsm_token_status, what `kms-admin hsm status` shows, read
 * through libp11 (slots, token info, login) independently of hsm_open.
 *
 * libp11 finalizes the module when its context is unloaded, even when its
 * C_Initialize found the module already initialized. In a process where
 * the module was initialized before (an open hsm, say), that would pull
 * the module out from under its owner; so then the context is freed
 * without unloading and the module stays as it was found. (Releasing
 * libp11's slots may still close that owner's sessions; the layer's
 * session recovery reopens them.)
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <libp11.h>
#include <openssl/err.h>

#include "hsm/p11_internal.h"

#ifndef KMS_SOFTHSM_MODULE
#define KMS_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

/* The module's own function list, if it is loaded in this process. */
static CK_FUNCTION_LIST_PTR loaded_function_list(const char *path, void **module)
{
	*module = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	if (!*module)
		return NULL;
	CK_C_GetFunctionList get_list;
	CK_FUNCTION_LIST_PTR p11 = NULL;
	*(void **)&get_list = dlsym(*module, "C_GetFunctionList");
	if (!get_list || get_list(&p11) != CKR_OK) {
		dlclose(*module);
		*module = NULL;
		return NULL;
	}
	return p11;
}

/* Whether something in this process has the module initialized right now. */
static bool module_initialized(const char *path)
{
	void *module;
	CK_FUNCTION_LIST_PTR p11 = loaded_function_list(path, &module);
	if (!p11)
		return false;
	CK_INFO info;
	bool initialized = p11->C_GetInfo(&info) != CKR_CRYPTOKI_NOT_INITIALIZED;
	dlclose(module);
	return initialized;
}

/* The CK_RV behind libp11's last error, or CKR_GENERAL_ERROR. */
static CK_RV libp11_last_rv(void)
{
	unsigned long err = ERR_peek_last_error();
	ERR_clear_error();
	unsigned long reason = err ? (unsigned long)ERR_GET_REASON(err) : 0;
	return reason ? reason : CKR_GENERAL_ERROR;
}

/* Counts the token's objects through a session of our own (the login is
 * the application's, so private objects count too once logged in). */
static bool count_objects(const char *path, CK_SLOT_ID slot, unsigned long *count)
{
	void *module;
	CK_FUNCTION_LIST_PTR p11 = loaded_function_list(path, &module);
	CK_SESSION_HANDLE s;
	bool ok = false;

	*count = 0;
	if (!p11)
		return false;
	if (p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		goto out;
	if (p11->C_FindObjectsInit(s, NULL, 0) == CKR_OK) {
		CK_OBJECT_HANDLE batch[64];
		CK_ULONG got = 0;
		ok = true;
		while (p11->C_FindObjects(s, batch, 64, &got) == CKR_OK && got > 0)
			*count += got;
		(void)p11->C_FindObjectsFinal(s);
	}
	(void)p11->C_CloseSession(s);
out:
	dlclose(module);
	return ok;
}

kms_status hsm_token_status(const hsm_config *config, hsm_token_info *info)
{
	KMS_ENSURE(config != NULL && info != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	memset(info, 0, sizeof *info);
	KMS_ENSURE(config->token_label && config->token_label[0], KMS_INVALID_ARGUMENT,
	           "hsm: token_label is required");
	const char *path = config->module_path && config->module_path[0] ? config->module_path
	                                                                 : KMS_SOFTHSM_MODULE;
	bool has_pin = (config->pin_file && config->pin_file[0]) ||
	               (config->pin_env && config->pin_env[0]);
	kms_status st = KMS_OK;
	hsm_pin pin = { 0 };
	PKCS11_SLOT *slots = NULL, *slot = NULL;
	unsigned int slot_count = 0;
	bool borrowed = module_initialized(path);
	bool loaded = false;

	PKCS11_CTX *ctx = PKCS11_CTX_new();
	KMS_ENSURE(ctx != NULL, KMS_INTERNAL, "hsm: PKCS11_CTX_new failed");
	if (PKCS11_CTX_load(ctx, path) != 0) {
		CK_RV rv = libp11_last_rv();
		/* Tell a missing file from a module that would not start. */
		void *probe = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		const char *why = probe ? hsm_rv_name(rv) : dlerror();
		if (probe)
			dlclose(probe);
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: cannot load PKCS#11 module %s: %s", path,
		              why ? why : "unknown error");
		goto out;
	}
	loaded = true;
	if (PKCS11_enumerate_slots(ctx, &slots, &slot_count) != 0) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: listing the slots of %s -> %s", path,
		              hsm_rv_name(libp11_last_rv()));
		goto out;
	}
	unsigned matches = 0;
	for (unsigned int i = 0; i < slot_count; i++) {
		PKCS11_TOKEN *token = slots[i].token;
		if (token && token->label && strcmp(token->label, config->token_label) == 0) {
			if (matches++ == 0)
				slot = &slots[i];
		}
	}
	if (!slot) {
		st = hsm_no_token(config->token_label, path);
		goto out;
	}
	if (matches > 1) {
		st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
		              "hsm: %u tokens labelled \"%s\" in module %s: labels must be unique",
		              matches, config->token_label, path);
		goto out;
	}

	PKCS11_TOKEN *token = slot->token;
	snprintf(info->label, sizeof info->label, "%s", token->label ? token->label : "");
	snprintf(info->serial, sizeof info->serial, "%s", token->serialnr ? token->serialnr : "");
	snprintf(info->model, sizeof info->model, "%s", token->model ? token->model : "");
	snprintf(info->manufacturer, sizeof info->manufacturer, "%s",
	         token->manufacturer ? token->manufacturer : "");
	info->slot_id = PKCS11_get_slotid_from_slot(slot);
	info->initialized = token->initialized;
	info->login_required = token->loginRequired;

	if (has_pin) {
		KMS_GUARD_OUT(st, hsm_pin_load(config, &pin));
		if (PKCS11_login(slot, 0, pin.bytes) != 0) {
			CK_RV rv = libp11_last_rv();
			if (rv != CKR_USER_ALREADY_LOGGED_IN) {
				st = KMS_FAIL(KMS_HSM_UNAVAILABLE,
				              "hsm: C_Login on token \"%s\" -> %s: check %s",
				              config->token_label, hsm_rv_name(rv), pin.source);
				goto out;
			}
		}
	}
	int logged_in = 0;
	if (PKCS11_is_logged_in(slot, 0, &logged_in) == 0)
		info->logged_in = logged_in != 0;
	/* Best effort: without it the count just stays 0. */
	(void)count_objects(path, info->slot_id, &info->objects);
out:
	hsm_pin_free(&pin);
	if (slots)
		PKCS11_release_all_slots(ctx, slots, slot_count);
	if (loaded && !borrowed)
		PKCS11_CTX_unload(ctx);
	PKCS11_CTX_free(ctx);
	ERR_clear_error();
	return st;
}
