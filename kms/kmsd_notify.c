/* kmsd_notify.c: READY, STOPPING and the HSM-gated WATCHDOG (kmsd_notify.h). */
#include "kms/kmsd_notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "common/error.h"
#include "common/log.h"

struct kmsd_notify {
	hsm *hsm;
	uint64_t period_us; /* half of WATCHDOG_USEC; 0: no watchdog */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* CLOCK_MONOTONIC */
	bool stop;
	bool hsm_ok; /* the last probe's result (watchdog thread only) */
};

/* Sends state (NEWLINE-separated KEY=VALUE lines); a failure is logged,
 * never fatal: kmsd serves whether or not systemd hears it. */
static void send_state(const char *what, const char *status)
{
	int rc = sd_notifyf(0, "%s\nSTATUS=%s", what, status);
	if (rc < 0)
		kms_log("warn", "systemd notify (%s): %s", what, strerror(-rc));
}

/* One watchdog period: probe the HSM, ping only if it answered, and say so
 * in the log when the answer changes. */
static void watchdog_beat(kmsd_notify *n)
{
	uint8_t probe[1];
	bool ok = hsm_random(n->hsm, probe, sizeof probe) == KMS_OK;
	if (!ok && n->hsm_ok)
		kms_log("error", "watchdog: the HSM probe failed (%s): systemd is no longer told "
		        "kmsd is alive and restarts it after WatchdogSec", kms_error_message());
	else if (ok && !n->hsm_ok)
		kms_log("info", "watchdog: the HSM answers again");
	kms_error_clear();
	n->hsm_ok = ok;
	if (!ok)
		return;
	int rc = sd_notify(0, "WATCHDOG=1");
	if (rc < 0)
		kms_log("warn", "systemd notify (WATCHDOG=1): %s", strerror(-rc));
}

static void deadline_after(struct timespec *at, uint64_t us)
{
	clock_gettime(CLOCK_MONOTONIC, at);
	uint64_t ns = (uint64_t)at->tv_nsec + (us % 1000000u) * 1000u;
	at->tv_sec += (time_t)(us / 1000000u + ns / 1000000000u);
	at->tv_nsec = (long)(ns % 1000000000u);
}

static void *watchdog_main(void *arg)
{
	kmsd_notify *n = arg;
	pthread_mutex_lock(&n->lock);
	while (!n->stop) {
		pthread_mutex_unlock(&n->lock);
		watchdog_beat(n);
		pthread_mutex_lock(&n->lock);
		struct timespec until;
		deadline_after(&until, n->period_us);
		while (!n->stop && pthread_cond_timedwait(&n->wake, &n->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

/* The watchdog's condition variable waits on the monotonic clock: a wall
 * clock stepped back must not stall the pings. */
static kms_status init_sync(kmsd_notify *n)
{
	pthread_condattr_t attr;
	KMS_ENSURE(pthread_condattr_init(&attr) == 0, KMS_INTERNAL, "cannot set up the watchdog's clock");
	bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
	          pthread_cond_init(&n->wake, &attr) == 0;
	pthread_condattr_destroy(&attr);
	KMS_ENSURE(ok, KMS_INTERNAL, "cannot set up the watchdog's clock");
	if (pthread_mutex_init(&n->lock, NULL) != 0) {
		pthread_cond_destroy(&n->wake);
		return KMS_FAIL(KMS_INTERNAL, "cannot set up the watchdog's lock");
	}
	return KMS_OK;
}

kms_status kmsd_notify_ready(hsm *h, const char *status, kmsd_notify **out)
{
	*out = NULL;
	kmsd_notify *n = calloc(1, sizeof *n);
	KMS_ENSURE(n, KMS_INTERNAL, "systemd notify: out of memory");
	n->hsm = h;
	n->hsm_ok = true;
	uint64_t usec = 0;
	/* > 0 only with WATCHDOG_USEC set (and WATCHDOG_PID, if set, ours). */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2)
		n->period_us = usec / 2;
	kms_status st = init_sync(n);
	if (st != KMS_OK) {
		free(n);
		return st;
	}
	send_state("READY=1", status);
	if (n->period_us) {
		kms_log("info", "watchdog: pinging systemd every %llu ms while the HSM answers",
		        (unsigned long long)(n->period_us / 1000u));
		if (pthread_create(&n->thread, NULL, watchdog_main, n) != 0) {
			kmsd_notify_close(n);
			return KMS_FAIL(KMS_INTERNAL, "cannot start the watchdog thread (WatchdogSec): "
			                "lower [kmsd] workers or raise the thread limit");
		}
		n->running = true;
	}
	*out = n;
	return KMS_OK;
}

void kmsd_notify_stopping(kmsd_notify *n, const char *status)
{
	if (n)
		send_state("STOPPING=1", status);
}

void kmsd_notify_close(kmsd_notify *n)
{
	if (!n)
		return;
	if (n->running) {
		pthread_mutex_lock(&n->lock);
		n->stop = true;
		pthread_cond_signal(&n->wake);
		pthread_mutex_unlock(&n->lock);
		pthread_join(n->thread, NULL);
	}
	pthread_cond_destroy(&n->wake);
	pthread_mutex_destroy(&n->lock);
	free(n);
}
