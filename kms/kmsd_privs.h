/*
 * kmsd_privs.h: kmsd started as root runs as [process] user once it is
 * open (docs/config.md; docs/security.md, "Privileges").
 *
 * main.c's order, when kmsd starts as root and [process] user is set:
 *
 *   1. kmsd_privs_check: the data dir (and, for SoftHSM, the token dir)
 *      and everything in it belongs to the user, or kmsd refuses to start
 *      with the chown that fixes it. RLIMIT_MEMLOCK is raised to what
 *      [limits] max_locked_bytes needs while root still may.
 *   2. The HSM is opened as root (a PIN file may stay root's own).
 *   3. kmsd_privs_act_as, while kmsd has one thread: every file kmsd
 *      creates from here on (the store and its -wal/-shm, the audit log and
 *      its tiles, the ipc sockets, SoftHSM's token objects: the KEK, the
 *      audit signing key, ...) is created as the user, and every file
 *      access is checked as the user (the filesystem uid and gid, which
 *      every thread created later inherits). kmsd is still root otherwise:
 *      the HTTP listener may bind a privileged port.
 *   4. The store and the audit log open; the ipc sockets and the HTTP
 *      listener are bound (server_open, http_open), nothing accepted.
 *   5. kmsd_privs_drop: setgroups(0), setgid, setuid (glibc applies them to
 *      every thread), then checked: every id of every thread is the user's,
 *      setuid(0) fails, no thread has a capability left. Anything else and
 *      kmsd stops (fail closed).
 *   6. Only now does kmsd serve (server_serve, http_serve): the threads
 *      that accept and read start, and the tls+tcp:// listeners are bound
 *      (NNG binds and accepts in one step, so their ports are 1024 or
 *      more). No peer's byte is read while kmsd is root.
 *
 * Started as a user (systemd's User=), none of this happens: [process] user
 * unset, or naming that same user, changes nothing.
 */
#ifndef KMS_KMSD_PRIVS_H
#define KMS_KMSD_PRIVS_H

#include <stdbool.h>

#include <kms/status.h>

#include "kms/config.h"

/* Whether kmsd is root and switches to [process] user. */
bool kmsd_privs_dropping(const kmsd_config *cfg);

/* Step 1: refuses a user kmsd cannot become and a data dir (or SoftHSM
 * token dir) with something not the user's. */
kms_status kmsd_privs_check(const kmsd_config *cfg) KMS_MUST_USE;

/* Once serving: a warning when kmsd runs as root without [process] user. */
void kmsd_privs_warn_root(const kmsd_config *cfg);

/* Step 1: RLIMIT_MEMLOCK up to [limits] max_locked_bytes, soft and hard,
 * so that secret memory stays lockable without CAP_IPC_LOCK. Only warns
 * when it cannot (kmsd then says how many blocks were not locked). */
void kmsd_privs_raise_memlock(const kmsd_config *cfg);

/* Step 3. Fails unless kmsd has one thread. */
kms_status kmsd_privs_act_as(const kmsd_config *cfg) KMS_MUST_USE;

/* Step 5, and its checks. */
kms_status kmsd_privs_drop(const kmsd_config *cfg) KMS_MUST_USE;

#endif
