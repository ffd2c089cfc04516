/*
 * p11_info.c: hsm_info, token status read through an open hsm's own
 * session: for health checks inside kmsd, where hsm_token_status (libp11)
 * must not run (releasing libp11's slots closes every session of the
 * process, including those other threads are using at that moment).
 */
#include <stdio.h>
#include <string.h>

#include "hsm/p11_internal.h"

/* A blank-padded CK_TOKEN_INFO field as a C string. */
static void copy_padded(char *out, size_t out_size, const CK_UTF8CHAR *field, size_t field_len)
{
	size_t len = field_len < out_size - 1 ? field_len : out_size - 1;
	while (len > 0 && field[len - 1] == ' ')
		len--;
	memcpy(out, field, len);
	out[len] = '\0';
}

static CK_RV count_token_objects(hsm *h, CK_SESSION_HANDLE s, unsigned long *count)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = { { CKA_TOKEN, &yes, sizeof yes } };
	CK_OBJECT_HANDLE batch[64];
	CK_ULONG got = 0;

	*count = 0;
	CK_RV rv = h->p11->C_FindObjectsInit(s, tmpl, 1);
	if (rv != CKR_OK)
		return rv;
	while ((rv = h->p11->C_FindObjects(s, batch, 64, &got)) == CKR_OK && got > 0)
		*count += got;
	CK_RV final_rv = h->p11->C_FindObjectsFinal(s);
	return rv != CKR_OK ? rv : final_rv;
}

typedef struct info_attempt {
	hsm_token_info *info;
	const char *call; /* the call *rv came from, for the message */
} info_attempt;

static kms_status info_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	info_attempt *a = ctx;
	hsm_token_info *info = a->info;
	CK_TOKEN_INFO token;
	CK_SESSION_INFO session;

	a->call = "C_GetTokenInfo";
	CK_RV rv = h->p11->C_GetTokenInfo(h->slot, &token);
	if (rv == CKR_OK) {
		a->call = "C_GetSessionInfo";
		rv = h->p11->C_GetSessionInfo(s, &session);
	}
	if (rv == CKR_OK) {
		a->call = "C_FindObjects";
		rv = count_token_objects(h, s, &info->objects);
	}
	if (rv == CKR_OK) {
		copy_padded(info->label, sizeof info->label, token.label, sizeof token.label);
		copy_padded(info->serial, sizeof info->serial, token.serialNumber,
		            sizeof token.serialNumber);
		copy_padded(info->model, sizeof info->model, token.model, sizeof token.model);
		copy_padded(info->manufacturer, sizeof info->manufacturer, token.manufacturerID,
		            sizeof token.manufacturerID);
		info->slot_id = h->slot;
		info->initialized = (token.flags & CKF_TOKEN_INITIALIZED) != 0;
		info->login_required = (token.flags & CKF_LOGIN_REQUIRED) != 0;
		info->logged_in = session.state == CKS_RW_USER_FUNCTIONS ||
		                  session.state == CKS_RO_USER_FUNCTIONS;
	}
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_info(hsm *h, hsm_token_info *info)
{
	KMS_ENSURE(h != NULL && info != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	memset(info, 0, sizeof *info);
	info_attempt a = { .info = info };
	CK_RV rv;

	/* Getting the session logs in again if the login was lost, so
	 * logged_in reports the state after the layer's usual repair. No id:
	 * the count uses no cached handle. */
	KMS_GUARD(hsm_run(h, NULL, info_step, &a, &rv));
	if (rv == CKR_OK)
		return KMS_OK;
	/* A failed count may have left a partial object count behind. */
	memset(info, 0, sizeof *info);
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s on token \"%s\" -> %s", a.call,
	                h->token_label, hsm_rv_name(rv));
}
