/*
 * refusals.c: pre-authentication refusals, grouped by peer and reason, so
 * that their audit entries grow with the number of bursts, not of
 * refusals (refusals.h).
 */
#include "kms/pipeline/refusals.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kms/audit/audit.h"
#include "kms/audit/audit_entry.h"
#include "common/error.h"
#include "common/log.h"

#define OTHER_PEERS "(other peers)"

/* One peer and reason: its pending count and when the burst began. */
typedef struct refusal_group {
	bool in_use;
	char peer[96];      /* "ipc uid=65534", "tls 127.0.0.1": the grouping key */
	char reason[REFUSALS_REASON_MAX];
	char principal[64];
	char source[96];    /* as the first refusal of the group gave it */
	uint64_t pending;   /* refusals counted, not yet written */
	int64_t first_us;   /* wall clock of the first pending one */
	int64_t last_us;    /* and of the last */
	uint64_t burst_mono_ms; /* monotonic: when the pending count began */
	uint64_t last_mono_ms;  /* monotonic: the last refusal */
	uint64_t written_mono_ms; /* monotonic: the group's last entry (0: none) */
	bool flush_now;     /* a burst began that no caller waited to write */
} refusal_group;

struct refusals {
	kmsd *d;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	bool failing;       /* the last write failed: said once in kmsd's log */
	pthread_t flusher;
	refusal_group groups[REFUSALS_SLOTS];
	refusal_group other; /* refusals past REFUSALS_SLOTS groups */
};

static uint64_t now_ms(void)
{
	return kms_monotonic_us() / 1000;
}

/* The grouping key: the ipc uid, or the remote host without its port (a
 * peer reconnecting gets a new port each time). */
static void peer_key(const caller *who, char out[96])
{
	if (who->transport == CALLER_IPC) {
		snprintf(out, 96, "ipc uid=%llu", (unsigned long long)who->uid);
		return;
	}
	const char *colon = strrchr(who->source, ':');
	size_t n = colon && colon > who->source ? (size_t)(colon - who->source)
	                                        : strlen(who->source);
	snprintf(out, 96, "%.*s", (int)n, who->source);
}

static kms_status write_entry(kmsd *d, const audit_refusal *what)
{
	char *entry = NULL;
	size_t len = 0;
	KMS_GUARD(audit_entry_build_refusal(what, &entry, &len));
	kms_status st = audit_append(d->audit, entry, len);
	free(entry);
	return st;
}

/* The group for this peer and reason: found, or a free one, or "other". */
static refusal_group *group_for(refusals *r, const char *peer, const char *reason)
{
	refusal_group *free_group = NULL;
	for (size_t i = 0; i < REFUSALS_SLOTS; i++) {
		refusal_group *g = &r->groups[i];
		if (g->in_use && !strcmp(g->peer, peer) && !strcmp(g->reason, reason))
			return g;
		if (!g->in_use && !free_group)
			free_group = g;
	}
	if (!free_group) {
		if (!r->other.in_use) {
			r->other.in_use = true;
			snprintf(r->other.peer, sizeof r->other.peer, OTHER_PEERS);
			snprintf(r->other.reason, sizeof r->other.reason,
			         "refused before authentication (reasons of more than %d peers)",
			         REFUSALS_SLOTS);
			snprintf(r->other.principal, sizeof r->other.principal, OTHER_PEERS);
			snprintf(r->other.source, sizeof r->other.source, OTHER_PEERS);
		}
		return &r->other;
	}
	memset(free_group, 0, sizeof *free_group);
	free_group->in_use = true;
	snprintf(free_group->peer, sizeof free_group->peer, "%s", peer);
	snprintf(free_group->reason, sizeof free_group->reason, "%s", reason);
	return free_group;
}

/* Takes g's pending count into *out (strings copied into bufs) and resets
 * it; called under the lock, written after it is released. */
typedef struct pending_copy {
	audit_refusal what;
	char principal[64], source[96], reason[REFUSALS_REASON_MAX];
} pending_copy;

static void take_pending(refusal_group *g, uint64_t now, pending_copy *out)
{
	memcpy(out->principal, g->principal, sizeof out->principal);
	memcpy(out->source, g->source, sizeof out->source);
	memcpy(out->reason, g->reason, sizeof out->reason);
	out->what = (audit_refusal){
		.principal = out->principal,
		.source = out->source,
		.reason = out->reason,
		.count = g->pending,
		.first_us = g->first_us,
		.last_us = g->last_us,
	};
	g->pending = 0;
	g->flush_now = false;
	g->written_mono_ms = now;
}

/* A failed write puts the count back, so that none is lost while the log
 * cannot be written; the flusher tries again on its next tick. */
static void put_back(refusals *r, refusal_group *g, const audit_refusal *what)
{
	if (!g->pending) {
		g->first_us = what->first_us;
		g->burst_mono_ms = now_ms();
	}
	g->pending += what->count;
	if (what->last_us > g->last_us)
		g->last_us = what->last_us;
	if (!r->failing)
		kms_log("error", "audit: %llu refusals of %s not written yet: %s",
		        (unsigned long long)what->count, what->source, kms_error_message());
	r->failing = true;
}

static kms_status note(kmsd *d, const caller *who, const char *reason, bool write_now)
{
	int64_t now_us = kms_now_us();
	if (!d->audit)
		return KMS_OK;
	if (!d->refusals) {
		if (!write_now)
			return KMS_OK; /* tests without a flusher: nothing would write it */
		audit_refusal one = { who->principal, who->source, reason, 1, now_us, now_us };
		return write_entry(d, &one);
	}
	refusals *r = d->refusals;
	char peer[96];
	peer_key(who, peer);
	uint64_t now = now_ms();
	pthread_mutex_lock(&r->lock);
	refusal_group *g = group_for(r, peer, reason);
	if (!g->principal[0]) {
		snprintf(g->principal, sizeof g->principal, "%s", who->principal);
		snprintf(g->source, sizeof g->source, "%s", who->source);
	}
	if (!g->pending) {
		g->first_us = now_us;
		g->burst_mono_ms = now;
	}
	g->pending++;
	g->last_us = now_us;
	g->last_mono_ms = now;
	/* The first refusal of a burst is written now, by its worker. */
	bool starts_burst = g->pending == 1 &&
	                    (!g->written_mono_ms || now - g->written_mono_ms >= REFUSALS_FLUSH_MS);
	if (starts_burst && !write_now) {
		g->flush_now = true; /* the flusher writes it on its next tick */
		pthread_cond_signal(&r->wake);
	}
	if (!starts_burst || !write_now) {
		pthread_mutex_unlock(&r->lock);
		return KMS_OK;
	}
	pending_copy copy;
	take_pending(g, now, &copy);
	pthread_mutex_unlock(&r->lock);
	kms_status st = write_entry(d, &copy.what);
	if (st != KMS_OK) {
		pthread_mutex_lock(&r->lock);
		put_back(r, g, &copy.what);
		pthread_mutex_unlock(&r->lock);
	}
	return st;
}

kms_status refusals_note(kmsd *d, const caller *who, const char *reason)
{
	return note(d, who, reason, true);
}

void refusals_count(kmsd *d, const caller *who, const char *reason)
{
	(void)note(d, who, reason, false);
}

/* A group's count is due when its burst is REFUSALS_FLUSH_MS old, or has
 * ended (REFUSALS_QUIET_MS without a refusal) at least REFUSALS_FLUSH_MS
 * after the group's last entry: so no group writes more than one entry per
 * REFUSALS_FLUSH_MS, however its peer paces its refusals. */
static bool due(const refusal_group *g, uint64_t now, bool all)
{
	if (!g->in_use || !g->pending)
		return false;
	bool ended = now - g->last_mono_ms >= REFUSALS_QUIET_MS &&
	             now - g->written_mono_ms >= REFUSALS_FLUSH_MS;
	return all || g->flush_now || ended || now - g->burst_mono_ms >= REFUSALS_FLUSH_MS;
}

/* Writes each group's pending count that is due (every one with `all`),
 * one entry per group; frees groups idle for a while. Takes the lock. */
static void flush(refusals *r, bool all)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i <= REFUSALS_SLOTS; i++) {
		refusal_group *g = i < REFUSALS_SLOTS ? &r->groups[i] : &r->other;
		uint64_t now = now_ms();
		if (g->in_use && !g->pending && now - g->last_mono_ms >= 4 * REFUSALS_FLUSH_MS) {
			g->in_use = false; /* idle: its slot may serve another peer */
			continue;
		}
		if (!due(g, now, all))
			continue;
		pending_copy copy;
		take_pending(g, now, &copy);
		pthread_mutex_unlock(&r->lock);
		kms_status st = write_entry(r->d, &copy.what);
		pthread_mutex_lock(&r->lock);
		if (st != KMS_OK) {
			put_back(r, g, &copy.what);
			break; /* the log is down: the next tick tries again */
		}
		if (r->failing)
			kms_log("info", "audit: refusals are written again");
		r->failing = false;
	}
	pthread_mutex_unlock(&r->lock);
}

static void *flusher_main(void *arg)
{
	refusals *r = arg;
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)REFUSALS_TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->wake, &r->lock, &until);
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->lock);
		flush(r, false);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

kms_status refusals_open(kmsd *d, refusals **out)
{
	*out = NULL;
	refusals *r = calloc(1, sizeof *r);
	KMS_ENSURE(r, KMS_INTERNAL, "out of memory for the refusal counts");
	r->d = d;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->wake, NULL);
	if (pthread_create(&r->flusher, NULL, flusher_main, r) != 0) {
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return KMS_FAIL(KMS_INTERNAL, "cannot start the refusal flusher thread");
	}
	*out = r;
	return KMS_OK;
}

void refusals_close(refusals *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->flusher, NULL);
	flush(r, true);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
