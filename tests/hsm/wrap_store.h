/*
 * wrap_store.h: what the wrapped-key tests share: a tiny in-memory "store"
 * of wrapped key versions (what the metadata store holds for kmsd), its
 * loader for the key cache, and raw looks at the module's objects.
 */
#ifndef KMS_TESTS_HSM_WRAP_STORE_H
#define KMS_TESTS_HSM_WRAP_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "hsm/p11_internal.h"
#include "tests/support/hsm_test.h"

#define STORE_MAX 128

typedef struct stored_version {
	hsm_object_id name;
	hsm_object_id kek;
	hsm_key_type type;
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t len;
} stored_version;

typedef struct test_store {
	stored_version rows[STORE_MAX];
	size_t count;
	atomic_uint loads;
	/* Runs inside the loader before it answers (NULL: none); its status is the loader's. */
	kms_status (*hook)(struct test_store *store, const hsm_object_id *name);
	void *hook_ctx;
} test_store;

static inline stored_version *store_find(test_store *store, const hsm_object_id *name)
{
	for (size_t i = 0; i < store->count; i++)
		if (store->rows[i].name.len == name->len &&
		    memcmp(store->rows[i].name.bytes, name->bytes, name->len) == 0)
			return &store->rows[i];
	return NULL;
}

/* Generates a version under kek and keeps its wrapped bytes as `name`. */
static inline stored_version *store_generate(hsm *h, test_store *store, const char *name,
                                             const hsm_object_id *kek, hsm_key_type type)
{
	assert_true(store->count < STORE_MAX);
	stored_version *row = &store->rows[store->count++];
	memset(row, 0, sizeof *row);
	row->name = test_id(name);
	row->kek = *kek;
	row->type = type;
	kms_status st = hsm_generate_wrapped(h, kek, type, row->wrapped, sizeof row->wrapped,
	                                     &row->len);
	if (st != KMS_OK)
		fail_msg("generate %s: %s", name, kms_error_message());
	return row;
}

static inline kms_status store_loader(void *ctx, const hsm_object_id *name, hsm_object_id *kek,
                                      hsm_key_type *type, uint8_t *wrapped, size_t cap,
                                      size_t *len)
{
	test_store *store = ctx;
	atomic_fetch_add(&store->loads, 1);
	if (store->hook) {
		kms_status st = store->hook(store, name);
		if (st != KMS_OK)
			return st;
	}
	const stored_version *row = store_find(store, name);
	if (!row)
		return KMS_FAIL(KMS_NOT_FOUND, "test store: no version %.*s", (int)name->len,
		                (const char *)name->bytes);
	if (row->len > cap)
		return KMS_FAIL(KMS_INTERNAL, "test store: %zu bytes do not fit", row->len);
	*kek = row->kek;
	*type = row->type;
	memcpy(wrapped, row->wrapped, row->len);
	*len = row->len;
	return KMS_OK;
}

/* Session objects (CKA_TOKEN false) of class cls the module holds for this process. */
static inline unsigned long raw_session_objects(test_raw *raw, CK_OBJECT_CLASS cls)
{
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_TOKEN, &no, sizeof no },
		{ CKA_CLASS, &cls, sizeof cls },
	};
	CK_OBJECT_HANDLE found[256];
	CK_ULONG count = 0;
	assert_int_equal(raw->p11->C_FindObjectsInit(raw->session, tmpl, 2), CKR_OK);
	assert_int_equal(raw->p11->C_FindObjects(raw->session, found, 256, &count), CKR_OK);
	assert_int_equal(raw->p11->C_FindObjectsFinal(raw->session), CKR_OK);
	return count;
}

/* The rv of reading one attribute of object on the raw session. */
static inline CK_RV raw_read(test_raw *raw, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                             void *out, CK_ULONG len)
{
	CK_ATTRIBUTE attr = { type, out, len };
	return raw->p11->C_GetAttributeValue(raw->session, object, &attr, 1);
}

#endif
