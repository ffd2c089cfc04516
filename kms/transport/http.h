/*
 * http.h: kmsd's HTTP side, on NNG's HTTP server (loopback by default):
 *   /healthz       200 "ok" when the HSM answers and the audit log is
 *                  writable, else 503 with the reason
 *   /metrics       Prometheus text: requests by operation and status,
 *                  requests in flight, audit entries, uptime
 *   /audit/...     the published tlog-tiles directory (checkpoint, tile/...),
 *                  read-only static files any mirror can copy
 */
#ifndef KMS_HTTP_H
#define KMS_HTTP_H

#include <kms/status.h>

#include "kms/kmsd.h"

typedef struct http_server http_server;

kms_status http_start(kmsd *d, const char *url, const char *audit_public_dir,
                      http_server **out) KMS_MUST_USE;

/* Stops serving and frees it. NULL is ignored. */
void http_stop(http_server *s);

#endif
