/*
 * p11_objects.c: finding objects by CKA_ID (through the handle cache),
 * creating secret keys (AES keys, KEKs), destroying, testing and listing
 * objects.
 */
#include <stdlib.h>
#include <string.h>

#include "hsm/p11_internal.h"

/* Handles fetched per C_FindObjects call while listing. */
#define FIND_BATCH 64

/*
 * Runs one search on s and always ends it (C_FindObjectsFinal), so no path
 * leaves a search active in the session. Up to max handles land in out.
 */
static CK_RV find_objects(hsm *h, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG tmpl_len,
                          CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
	*count = 0;
	CK_RV rv = h->p11->C_FindObjectsInit(s, tmpl, tmpl_len);
	if (rv != CKR_OK)
		return rv;
	rv = h->p11->C_FindObjects(s, out, max, count);
	CK_RV final_rv = h->p11->C_FindObjectsFinal(s);
	return rv != CKR_OK ? rv : final_rv;
}

/*
 * Nothing found: true absence, or the login is gone and private objects are
 * hidden. Tell them apart so the caller can log in and look again.
 */
static CK_RV absent_or_logged_out(hsm *h, CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO info;
	CK_RV rv = h->p11->C_GetSessionInfo(s, &info);
	if (rv != CKR_OK)
		return rv;
	if (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS)
		return CKR_USER_NOT_LOGGED_IN;
	return CKR_OK;
}

CK_RV hsm_key_handle(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *id, hsm_key_class cls,
                     CK_OBJECT_HANDLE *out)
{
	*out = CK_INVALID_HANDLE;
	if (hsm_cache_get(&h->cache, id, cls, out))
		return CKR_OK;

	CK_OBJECT_CLASS object_class = CKO_SECRET_KEY;
	CK_KEY_TYPE key_type = CKK_AES;
	CK_ULONG tmpl_len = 4;
	switch (cls) {
	case HSM_KEY_AES:
	case HSM_KEY_KEK:
		/* A KEK is the AES key that can unwrap (the fifth attribute). */
		tmpl_len = cls == HSM_KEY_KEK ? 5 : 4;
		break;
	case HSM_KEY_ED25519_PRIVATE:
		object_class = CKO_PRIVATE_KEY;
		key_type = CKK_EC_EDWARDS;
		break;
	case HSM_KEY_ED25519_PUBLIC:
	default:
		object_class = CKO_PUBLIC_KEY;
		key_type = CKK_EC_EDWARDS;
		break;
	}
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_ID, hsm_unconst(id->bytes), id->len },
		{ CKA_CLASS, &object_class, sizeof object_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_UNWRAP, &yes, sizeof yes },
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG count = 0;
	CK_RV rv = find_objects(h, s, tmpl, tmpl_len, found, 2, &count);
	if (rv != CKR_OK)
		return rv;
	if (count == 0)
		return absent_or_logged_out(h, s);
	if (count > 1)
		return HSM_CKR_DUPLICATE_ID;
	hsm_cache_put(&h->cache, id, cls, found[0]);
	*out = found[0];
	return CKR_OK;
}

CK_RV hsm_id_taken(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *id, bool *taken)
{
	CK_ATTRIBUTE tmpl[] = { { CKA_ID, hsm_unconst(id->bytes), id->len } };
	CK_OBJECT_HANDLE found;
	CK_ULONG count = 0;
	*taken = false;
	CK_RV rv = find_objects(h, s, tmpl, 1, &found, 1, &count);
	if (rv != CKR_OK)
		return rv;
	if (count == 0)
		return absent_or_logged_out(h, s);
	*taken = true;
	return CKR_OK;
}

kms_status hsm_label_check(const char *label)
{
	KMS_ENSURE(label != NULL, KMS_INVALID_ARGUMENT, "hsm: object label is NULL");
	KMS_ENSURE(strlen(label) <= HSM_LABEL_MAX, KMS_INVALID_ARGUMENT,
	           "hsm: object label is longer than %d bytes", HSM_LABEL_MAX);
	return KMS_OK;
}

typedef struct aes_create_attempt {
	const hsm_object_id *id;
	hsm_key_class cls;
	CK_MECHANISM *mech;
	CK_ATTRIBUTE *tmpl;
	CK_ULONG tmpl_len;
	const char *call; /* the call *rv came from, for the message */
} aes_create_attempt;

static kms_status aes_create_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	aes_create_attempt *a = ctx;
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	bool taken = false;

	a->call = "C_FindObjects";
	CK_RV rv = hsm_id_taken(h, s, a->id, &taken);
	if (rv == CKR_OK && taken)
		return KMS_FAIL(KMS_ALREADY_EXISTS, "hsm: an object with id %s already exists on "
		                "token \"%s\"", hsm_id_to_text(a->id).s, h->token_label);
	if (rv == CKR_OK) {
		a->call = "C_GenerateKey";
		rv = h->p11->C_GenerateKey(s, a->mech, a->tmpl, a->tmpl_len, &key);
	}
	/* The new handle is at hand: caching it spares the key's first use a search. */
	if (rv == CKR_OK)
		hsm_cache_put(&h->cache, a->id, a->cls, key);
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_secret_create(hsm *h, const hsm_object_id *id, const char *label,
                             hsm_key_class cls, CK_ATTRIBUTE *tmpl, CK_ULONG tmpl_len,
                             const char *what)
{
	CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
	aes_create_attempt a = {
		.id = id,
		.cls = cls,
		.mech = &mech,
		.tmpl = tmpl,
		.tmpl_len = tmpl_len,
	};
	CK_RV rv;

	/* Held across the retry too: "id is free, then create" stays one step
	 * for this process even when the session had to be repaired between. */
	pthread_mutex_lock(&h->create_lock);
	kms_status st = hsm_run(h, id, aes_create_step, &a, &rv);
	if (st == KMS_OK && rv != CKR_OK)
		st = KMS_FAIL(hsm_status_of(rv), "hsm: %s %s id %s label \"%s\" -> %s", a.call, what,
		              hsm_id_to_text(id).s, label, hsm_rv_name(rv));
	pthread_mutex_unlock(&h->create_lock);
	return st;
}

kms_status hsm_aes_create(hsm *h, const hsm_object_id *id, const char *label)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_GUARD(hsm_id_check(id));
	KMS_GUARD(hsm_label_check(label));

	CK_OBJECT_CLASS object_class = CKO_SECRET_KEY;
	CK_KEY_TYPE key_type = CKK_AES;
	CK_ULONG value_len = HSM_AES256_KEY_LEN;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &object_class, sizeof object_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_VALUE_LEN, &value_len, sizeof value_len },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &no, sizeof no },
		{ CKA_ENCRYPT, &yes, sizeof yes },
		{ CKA_DECRYPT, &yes, sizeof yes },
		/* Only what the key is for: no wrapping, signing or derivation. */
		{ CKA_WRAP, &no, sizeof no },
		{ CKA_UNWRAP, &no, sizeof no },
		{ CKA_SIGN, &no, sizeof no },
		{ CKA_VERIFY, &no, sizeof no },
		{ CKA_DERIVE, &no, sizeof no },
		{ CKA_ID, hsm_unconst(id->bytes), id->len },
		{ CKA_LABEL, hsm_unconst(label), strlen(label) },
	};
	return hsm_secret_create(h, id, label, HSM_KEY_AES, tmpl, sizeof tmpl / sizeof tmpl[0],
	                         "AES key");
}

typedef struct destroy_attempt {
	CK_ATTRIBUTE *tmpl; /* CKA_ID */
	const char *call; /* the call *rv came from, for the message */
} destroy_attempt;

static kms_status destroy_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	destroy_attempt *a = ctx;
	CK_OBJECT_HANDLE found[FIND_BATCH];
	CK_ULONG count = 0;

	a->call = "C_FindObjects";
	/* A key or both halves of a pair, usually; a full batch means look again. */
	CK_RV rv = find_objects(h, s, a->tmpl, 1, found, FIND_BATCH, &count);
	/* Nothing found while logged out is not "nothing there": log in, look again. */
	if (rv == CKR_OK && count == 0)
		rv = absent_or_logged_out(h, s);
	while (rv == CKR_OK && count > 0) {
		a->call = "C_DestroyObject";
		for (CK_ULONG i = 0; rv == CKR_OK && i < count; i++) {
			rv = h->p11->C_DestroyObject(s, found[i]);
			/* Gone already (a concurrent destroy): that is what we wanted. */
			if (rv == CKR_OBJECT_HANDLE_INVALID)
				rv = CKR_OK;
		}
		if (rv != CKR_OK || count < FIND_BATCH)
			break;
		a->call = "C_FindObjects";
		rv = find_objects(h, s, a->tmpl, 1, found, FIND_BATCH, &count);
	}
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_object_destroy(hsm *h, const hsm_object_id *id)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_GUARD(hsm_id_check(id));

	CK_ATTRIBUTE tmpl[] = { { CKA_ID, hsm_unconst(id->bytes), id->len } };
	destroy_attempt a = { .tmpl = tmpl };
	CK_RV rv;
	kms_status st = KMS_OK;

	/* Whatever happens next, no handle of this id may be used again. */
	hsm_cache_drop(&h->cache, id);
	/* No session, or a failed repair, returns at once without the second
	 * drop: a handle another thread cached meanwhile is at worst stale, and
	 * hsm_recover drops and looks up a stale handle on its first use. */
	KMS_GUARD(hsm_run(h, id, destroy_step, &a, &rv));
	if (rv != CKR_OK)
		st = KMS_FAIL(hsm_status_of(rv), "hsm: %s id %s -> %s", a.call, hsm_id_to_text(id).s,
		              hsm_rv_name(rv));
	/* Again: another thread may have looked the id up while it was going. */
	hsm_cache_drop(&h->cache, id);
	return st;
}

typedef struct exists_attempt {
	const hsm_object_id *id;
	bool *exists;
} exists_attempt;

static kms_status exists_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	exists_attempt *a = ctx;
	/* hsm_id_taken tells "logged out" from "absent", so a lost login is
	 * repaired and the search run again rather than answered with false. */
	*rv = hsm_id_taken(h, s, a->id, a->exists);
	return KMS_OK;
}

kms_status hsm_object_exists(hsm *h, const hsm_object_id *id, bool *exists)
{
	KMS_ENSURE(h != NULL && exists != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	*exists = false;
	KMS_GUARD(hsm_id_check(id));

	exists_attempt a = { id, exists };
	CK_RV rv;
	KMS_GUARD(hsm_run(h, id, exists_step, &a, &rv));
	if (rv == CKR_OK)
		return KMS_OK;
	return KMS_FAIL(hsm_status_of(rv), "hsm: C_FindObjects id %s -> %s", hsm_id_to_text(id).s,
	                hsm_rv_name(rv));
}

/* --- listing --- */

typedef struct handle_list {
	CK_OBJECT_HANDLE *handles;
	size_t count, cap;
} handle_list;

/* Every token object's handle; the search is over before visit runs, so a
 * visitor may call back into the layer on this thread. */
static CK_RV collect_token_objects(hsm *h, CK_SESSION_HANDLE s, handle_list *list)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = { { CKA_TOKEN, &yes, sizeof yes } };
	list->count = 0;
	CK_RV rv = h->p11->C_FindObjectsInit(s, tmpl, 1);
	if (rv != CKR_OK)
		return rv;
	for (;;) {
		if (list->cap - list->count < FIND_BATCH) {
			size_t cap = list->cap ? list->cap * 2 : 4 * FIND_BATCH;
			CK_OBJECT_HANDLE *grown = realloc(list->handles, cap * sizeof *grown);
			if (!grown) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			list->handles = grown;
			list->cap = cap;
		}
		CK_ULONG got = 0;
		rv = h->p11->C_FindObjects(s, list->handles + list->count, FIND_BATCH, &got);
		if (rv != CKR_OK || got == 0)
			break;
		list->count += got;
	}
	CK_RV final_rv = h->p11->C_FindObjectsFinal(s);
	return rv != CKR_OK ? rv : final_rv;
}

static hsm_object_kind kind_of(CK_OBJECT_CLASS object_class, CK_KEY_TYPE key_type,
                               bool unwrap)
{
	if (object_class == CKO_SECRET_KEY && key_type == CKK_AES)
		return unwrap ? HSM_OBJECT_KEK : HSM_OBJECT_AES_KEY;
	if (object_class == CKO_PRIVATE_KEY && key_type == CKK_EC_EDWARDS)
		return HSM_OBJECT_ED25519_PRIVATE;
	if (object_class == CKO_PUBLIC_KEY && key_type == CKK_EC_EDWARDS)
		return HSM_OBJECT_ED25519_PUBLIC;
	return HSM_OBJECT_OTHER;
}

static kms_status list_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	handle_list *list = ctx;
	/* collect_token_objects starts the list over (keeping its memory), so a
	 * retry does not list an object twice. */
	*rv = collect_token_objects(h, s, list);
	/* An empty token while logged out hides the private keys: log in, look again. */
	if (*rv == CKR_OK && list->count == 0)
		*rv = absent_or_logged_out(h, s);
	return KMS_OK;
}

kms_status hsm_objects_list(hsm *h, hsm_visit_fn visit, void *ctx)
{
	KMS_ENSURE(h != NULL && visit != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	handle_list list = { 0 };
	kms_status st = KMS_OK;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV search_rv;

	/* The search uses no cached handle: no id for a repair to drop. */
	KMS_GUARD_OUT(st, hsm_run(h, NULL, list_step, &list, &search_rv));
	if (search_rv != CKR_OK) {
		st = KMS_FAIL(hsm_status_of(search_rv), "hsm: C_FindObjects (all) on token \"%s\" -> %s",
		              h->token_label, hsm_rv_name(search_rv));
		goto out;
	}

	for (size_t i = 0; i < list.count; i++) {
		hsm_object_id id = { .len = 0 };
		CK_OBJECT_CLASS object_class = (CK_OBJECT_CLASS)-1;
		CK_KEY_TYPE key_type = (CK_KEY_TYPE)-1;
		CK_BBOOL unwrap = CK_FALSE;
		CK_ATTRIBUTE attrs[] = {
			{ CKA_ID, id.bytes, sizeof id.bytes },
			{ CKA_CLASS, &object_class, sizeof object_class },
			{ CKA_KEY_TYPE, &key_type, sizeof key_type },
			{ CKA_UNWRAP, &unwrap, sizeof unwrap },
		};
		KMS_GUARD_OUT(st, hsm_session_get(h, &s));
		CK_RV rv = h->p11->C_GetAttributeValue(s, list.handles[i], attrs, 4);
		/*
		 * Certificates and data objects have no CKA_KEY_TYPE
		 * (CKR_ATTRIBUTE_TYPE_INVALID); an id longer than HSM_ID_MAX does
		 * not fit (CKR_BUFFER_TOO_SMALL). The lengths tell which worked.
		 */
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_BUFFER_TOO_SMALL &&
		    rv != CKR_ATTRIBUTE_SENSITIVE) {
			/* Destroyed since the search: it is not on the token any more. */
			if (rv == CKR_OBJECT_HANDLE_INVALID)
				continue;
			st = KMS_FAIL(hsm_status_of(rv), "hsm: C_GetAttributeValue (listing) -> %s",
			              hsm_rv_name(rv));
			goto out;
		}
		/* Objects with no id, or one too long to name, are not ours to reconcile. */
		if (attrs[0].ulValueLen == CK_UNAVAILABLE_INFORMATION || attrs[0].ulValueLen == 0 ||
		    attrs[0].ulValueLen > HSM_ID_MAX)
			continue;
		id.len = attrs[0].ulValueLen;
		if (attrs[1].ulValueLen != sizeof object_class)
			object_class = (CK_OBJECT_CLASS)-1;
		if (attrs[2].ulValueLen != sizeof key_type)
			key_type = (CK_KEY_TYPE)-1;
		bool can_unwrap = attrs[3].ulValueLen == sizeof unwrap && unwrap == CK_TRUE;
		KMS_GUARD_OUT(st, visit(ctx, &id, kind_of(object_class, key_type, can_unwrap)));
	}
out:
	free(list.handles);
	return st;
}
