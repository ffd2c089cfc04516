/*
 * p11_session.c: one PKCS#11 session per calling thread, and recovery:
 * hsm_recover repairs, hsm_run is the one bounded retry every operation
 * goes through.
 *
 * A thread's session is found through a pthread key of its hsm, so the hot
 * path takes no lock; the key's destructor closes the session when the
 * thread exits, so a daemon whose threads come and go does not run the
 * token out of sessions. The list of all sessions (under sessions_lock) is
 * touched only when a session opens or closes.
 *
 * Login state in PKCS#11 belongs to the application, not the session: it
 * ends when the application's last session closes (or someone calls
 * C_Logout or C_CloseAllSessions). So every session opened here checks the
 * state and logs in again when needed, and a fresh login empties the handle
 * cache (a module may renumber private objects across a logout).
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#include "hsm/p11_internal.h"

static void list_unlink(hsm *h, hsm_thread_session *ts)
{
	if (ts->prev)
		ts->prev->next = ts->next;
	else
		h->sessions = ts->next;
	if (ts->next)
		ts->next->prev = ts->prev;
	ts->prev = ts->next = NULL;
}

/* Runs on thread exit (not after hsm_close deleted the key). */
static void thread_session_destroy(void *value)
{
	hsm_thread_session *ts = value;
	hsm *h = ts->owner;

	pthread_mutex_lock(&h->sessions_lock);
	if (ts->open)
		(void)h->p11->C_CloseSession(ts->handle);
	list_unlink(h, ts);
	pthread_mutex_unlock(&h->sessions_lock);
	free(ts);
}

kms_status hsm_sessions_init(hsm *h)
{
	KMS_ENSURE(pthread_key_create(&h->session_key, thread_session_destroy) == 0, KMS_INTERNAL,
	           "hsm: pthread_key_create failed (too many hsm instances?)");
	h->session_key_live = true;
	return KMS_OK;
}

void hsm_sessions_logout(hsm *h)
{
	pthread_mutex_lock(&h->sessions_lock);
	for (hsm_thread_session *ts = h->sessions; ts; ts = ts->next) {
		if (ts->open) {
			(void)h->p11->C_Logout(ts->handle);
			break;
		}
	}
	pthread_mutex_unlock(&h->sessions_lock);
}

void hsm_sessions_close(hsm *h)
{
	if (!h->session_key_live)
		return;
	/* First: no destructor may run for this key any more. */
	pthread_key_delete(h->session_key);
	h->session_key_live = false;
	pthread_mutex_lock(&h->sessions_lock);
	while (h->sessions) {
		hsm_thread_session *ts = h->sessions;
		if (ts->open && h->p11)
			(void)h->p11->C_CloseSession(ts->handle);
		list_unlink(h, ts);
		free(ts);
	}
	pthread_mutex_unlock(&h->sessions_lock);
}

static bool state_is_user(CK_STATE state)
{
	return state == CKS_RW_USER_FUNCTIONS || state == CKS_RO_USER_FUNCTIONS;
}

/* Logs in on s when the application is not logged in. */
static kms_status ensure_login(hsm *h, CK_SESSION_HANDLE s, CK_RV *rv_out)
{
	CK_SESSION_INFO info;
	CK_RV rv = h->p11->C_GetSessionInfo(s, &info);
	*rv_out = rv;
	if (rv != CKR_OK)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_GetSessionInfo on token \"%s\" -> %s",
		                h->token_label, hsm_rv_name(rv));
	if (state_is_user(info.state))
		return KMS_OK;
	hsm_cache_clear(&h->cache);
	return hsm_login(h, s);
}

/* The slot is gone (a re-plugged token, a restarted HSM has new slot ids). */
static bool rv_slot_gone(CK_RV rv)
{
	return rv == CKR_SLOT_ID_INVALID || rv == CKR_DEVICE_REMOVED ||
	       rv == CKR_TOKEN_NOT_PRESENT;
}

kms_status hsm_session_open(hsm *h, CK_SESSION_HANDLE *out)
{
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SLOT_ID slot = atomic_load(&h->slot);
	CK_RV rv = h->p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv_slot_gone(rv)) {
		/* Once: find the token again by its label; if it is back (the same
		 * token), open the session in its new slot. */
		atomic_fetch_add_explicit(&h->rv_errors[hsm_rv_slot(rv)], 1, memory_order_relaxed);
		KMS_GUARD(hsm_slot_refind(h, slot));
		rv = h->p11->C_OpenSession(atomic_load(&h->slot), CKF_SERIAL_SESSION | CKF_RW_SESSION,
		                           NULL, NULL, &s);
	}
	if (rv != CKR_OK)
		atomic_fetch_add_explicit(&h->rv_errors[hsm_rv_slot(rv)], 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&h->sessions_opened, 1, memory_order_relaxed);
	KMS_ENSURE(rv == CKR_OK, KMS_HSM_UNAVAILABLE, "hsm: C_OpenSession on token \"%s\" -> %s",
	           h->token_label, hsm_rv_name(rv));
	kms_status st = ensure_login(h, s, &rv);
	if (st != KMS_OK) {
		(void)h->p11->C_CloseSession(s);
		return st;
	}
	*out = s;
	return KMS_OK;
}

bool hsm_rv_session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

kms_status hsm_session_get(hsm *h, CK_SESSION_HANDLE *out)
{
	hsm_thread_session *ts = pthread_getspecific(h->session_key);
	if (ts && ts->open) {
		*out = ts->handle;
		return KMS_OK;
	}
	if (!ts) {
		ts = calloc(1, sizeof *ts);
		KMS_ENSURE(ts != NULL, KMS_INTERNAL, "hsm: out of memory");
		ts->owner = h;
		if (pthread_setspecific(h->session_key, ts) != 0) {
			free(ts);
			return KMS_FAIL(KMS_INTERNAL, "hsm: pthread_setspecific failed");
		}
		pthread_mutex_lock(&h->sessions_lock);
		ts->next = h->sessions;
		if (h->sessions)
			h->sessions->prev = ts;
		h->sessions = ts;
		pthread_mutex_unlock(&h->sessions_lock);
	}

	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	KMS_GUARD(hsm_session_open(h, &s));
	/* Published under the lock so hsm_close and thread exit see a consistent pair. */
	pthread_mutex_lock(&h->sessions_lock);
	ts->handle = s;
	ts->open = true;
	pthread_mutex_unlock(&h->sessions_lock);
	*out = s;
	return KMS_OK;
}

void hsm_session_drop(hsm *h, bool close_it)
{
	hsm_thread_session *ts = pthread_getspecific(h->session_key);
	if (!ts || !ts->open)
		return;
	pthread_mutex_lock(&h->sessions_lock);
	/*
	 * A session the module already dropped is not closed again: its handle
	 * may by now name another thread's new session.
	 */
	if (close_it)
		(void)h->p11->C_CloseSession(ts->handle);
	ts->open = false;
	ts->handle = CK_INVALID_HANDLE;
	pthread_mutex_unlock(&h->sessions_lock);
}

kms_status hsm_recover(hsm *h, CK_SESSION_HANDLE s, CK_RV rv, const hsm_object_id *id,
                       bool *retry)
{
	*retry = false;
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
		/* The next hsm_session_get opens a new session and logs in as needed. */
		atomic_fetch_add_explicit(&h->sessions_lost, 1, memory_order_relaxed);
		hsm_session_drop(h, false);
		hsm_cache_clear(&h->cache);
		*retry = true;
		return KMS_OK;
	case CKR_OPERATION_ACTIVE:
		/* Something left an operation open: a fresh session is the only clean undo. */
		hsm_session_drop(h, true);
		*retry = true;
		return KMS_OK;
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_MEMORY:
		/* A transient fault of the device or of the path to it (a network
		 * HSM's hiccup): once more, on a fresh session. A persistent one
		 * fails the retry too and is the caller's to report. */
		hsm_session_drop(h, true);
		*retry = true;
		return KMS_OK;
	case CKR_USER_NOT_LOGGED_IN:
		hsm_cache_clear(&h->cache);
		KMS_GUARD(hsm_login(h, s));
		*retry = true;
		return KMS_OK;
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID: {
		/*
		 * The cached handle is stale: the object went away, or a logout
		 * behind our back made the module forget private handles. Which
		 * one, the retry's lookup tells.
		 */
		if (id)
			hsm_cache_drop(&h->cache, id);
		CK_RV info_rv;
		kms_status st = ensure_login(h, s, &info_rv);
		if (st != KMS_OK && (info_rv == CKR_SESSION_HANDLE_INVALID ||
		                     info_rv == CKR_SESSION_CLOSED)) {
			hsm_session_drop(h, false);
			hsm_cache_clear(&h->cache);
			st = KMS_OK;
		}
		KMS_GUARD(st);
		*retry = true;
		return KMS_OK;
	}
	default:
		return KMS_OK;
	}
}

kms_status hsm_run(hsm *h, const hsm_object_id *id, hsm_step_fn step, void *ctx, CK_RV *rv)
{
	/* A caller that reads *rv despite a failed status sees a failure, not success. */
	*rv = CKR_GENERAL_ERROR;
	for (bool retried = false;; retried = true) {
		CK_SESSION_HANDLE s;
		bool retry = false;

		KMS_GUARD(hsm_session_get(h, &s));
		uint64_t started = kms_monotonic_us();
		kms_status st = step(h, s, ctx, rv);
		hsm_note_attempt(h, started, st == KMS_OK ? *rv : CKR_OK);
		KMS_GUARD(st);
		/* Bounded: after one repair, whatever broke again is the caller's to report. */
		if (*rv == CKR_OK || retried)
			return KMS_OK;
		KMS_GUARD(hsm_recover(h, s, *rv, id, &retry));
		if (!retry)
			return KMS_OK;
	}
}

void hsm_call_stats_get(hsm *h, hsm_call_stats *out)
{
	memset(out, 0, sizeof *out);
	kms_hist_read(&h->attempt_us, &out->attempt_us);
	for (size_t i = 0; i < HSM_RV_SLOTS; i++)
		out->errors[i] = atomic_load_explicit(&h->rv_errors[i], memory_order_relaxed);
	out->sessions_opened = atomic_load_explicit(&h->sessions_opened, memory_order_relaxed);
	out->sessions_lost = atomic_load_explicit(&h->sessions_lost, memory_order_relaxed);
	pthread_mutex_lock(&h->sessions_lock);
	for (const hsm_thread_session *ts = h->sessions; ts; ts = ts->next)
		out->sessions_open += ts->open;
	pthread_mutex_unlock(&h->sessions_lock);
	if (h->keycache && hsm_keycache_session(h) != CK_INVALID_HANDLE)
		out->sessions_open++;
}
