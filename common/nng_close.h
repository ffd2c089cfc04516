/*
 * nng_close.h: closing an NNG socket without risking a hang.
 *
 * NNG 1.5.2 (Debian 12) can deadlock in nng_close (nanomsg/nng#1543, fixed
 * after 1.5.2); seen here in about one close in ten after requests timed
 * out or a daemon drained under load. kms closes sockets through this.
 *
 * One way in, caught by the client library's tests: a peer that drops the
 * connection while a large message is half written. The ipc transport then
 * resubmits the rest on a send aio that the pipe's close has already
 * stopped; it never completes, the pipe's teardown waits on it forever on
 * NNG's one reaper thread, and from then on no socket in the process
 * finishes closing. A bounded close that gives up leaves its socket's
 * memory behind, which LeakSanitizer reports at exit.
 */
#ifndef KMS_COMMON_NNG_CLOSE_H
#define KMS_COMMON_NNG_CLOSE_H

#include <stdbool.h>

#include <nng/nng.h>

/* Closes sock on a thread of its own and waits at most wait_ms for it.
 * True when it closed; false when it did not in time: the thread is left
 * behind (detached) and the caller must keep everything NNG may still use
 * (aios, contexts' memory) alive rather than free it. Blocks at most
 * wait_ms. */
bool kms_nng_close_bounded(nng_socket sock, unsigned wait_ms);

/* nng_fini(), bounded the same way: closes every socket still open and
 * waits for NNG's reaper to free what closed sockets left to it. A process
 * calls it once, last, after it is done with NNG: sockets close
 * synchronously but their dialers and pipes are freed later on the reaper
 * thread, and a process that exits while that is under way looks to
 * LeakSanitizer as if it leaked them. */
bool kms_nng_fini_bounded(unsigned wait_ms);

#endif
