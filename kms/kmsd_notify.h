/*
 * kmsd_notify.h: kmsd's state told to systemd (sd_notify(3)) when it runs as
 * a Type=notify service (packaging/systemd/kmsd.service, docs/operations.md).
 *
 * READY=1 once every listener is up (when kmsd logs "ready"), STOPPING=1
 * when a drain starts, and, with WatchdogSec (WATCHDOG_USEC in the
 * environment), WATCHDOG=1 every half period from a thread of its own, only
 * after a one-byte HSM draw succeeds: an HSM that stops answering stops the
 * pings and systemd restarts kmsd. Without NOTIFY_SOCKET nothing is sent and
 * no thread is started. Nothing secret is ever sent.
 */
#ifndef KMS_KMSD_NOTIFY_H
#define KMS_KMSD_NOTIFY_H

#include <kms/status.h>

#include "hsm/hsm.h"

typedef struct kmsd_notify kmsd_notify;

/* Sends READY=1 with status (one line, for `systemctl status`) and starts
 * the watchdog thread when systemd asked for one; h must stay open until
 * kmsd_notify_close. Fails only when that thread cannot start. */
kms_status kmsd_notify_ready(hsm *h, const char *status, kmsd_notify **out) KMS_MUST_USE;

/* Sends STOPPING=1 with status. The watchdog keeps pinging through the
 * drain (systemd's stop timeout bounds it). n may be NULL. */
void kmsd_notify_stopping(kmsd_notify *n, const char *status);

/* Stops and joins the watchdog thread; call before closing the HSM. NULL
 * is ignored. */
void kmsd_notify_close(kmsd_notify *n);

#endif
