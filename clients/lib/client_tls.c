/*
 * client_tls.c: why a tls+tcp:// endpoint does not answer. NNG 1.5.2 makes
 * a pipe only after the TLS handshake; a handshake that fails is retried in
 * the background and seen by nobody, so a call used to end in "no answer
 * within N ms" whatever the cause. After a call fails in the transport,
 * each TLS dialer with no connection is looked at:
 *
 *   - NNG's dialer statistics tell a failed handshake ("auth": mbedTLS
 *     refused kmsd's certificate or kmsd refused ours, "disconnect" or
 *     "proto": kmsd closed it) from nobody listening ("refused");
 *   - for a failed handshake, one diagnostic handshake with OpenSSL, with
 *     the same CA, server name and client certificate and a time bound,
 *     names the cause: kmsd's certificate does not carry the server name
 *     (as a DNS name: mbedTLS matches no IP entries), is not signed by the
 *     CA given, or kmsd did not take the client certificate (none given,
 *     expired or not yet valid by its own notAfter / notBefore, or not
 *     signed by a CA kmsd trusts).
 *
 * Nothing is sent in the diagnostic handshake but the handshake itself.
 */
#include "clients/lib/client_internal.h"
#include "common/nng_stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

struct client_tls_dialer {
	char *url;         /* as dialled: its statistics' "url" */
	char *host;        /* the URL's host, no brackets */
	char *port;
	char *server_name; /* what the certificate must carry */
	char *ca_file;
	char *cert_file;   /* NULL: no client certificate */
	char *key_file;    /* NULL: in cert_file (or none) */
};

static void dialer_free(client_tls_dialer *t)
{
	if (!t)
		return;
	free(t->url);
	free(t->host);
	free(t->port);
	free(t->server_name);
	free(t->ca_file);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}

static char *dup_or_null(const char *s, bool *failed)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*failed = true;
	return d;
}

kms_status client_tls_add(kms_client *c, const nng_url *url,
                          const kms_client_options *opts, const char *server_name,
                          kms_error *err)
{
	if (c->n_tls >= KMS_CLIENT_MAX_ENDPOINTS)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "more than %d tls+tcp:// endpoints", KMS_CLIENT_MAX_ENDPOINTS);
	client_tls_dialer *t = calloc(1, sizeof *t);
	bool failed = t == NULL;
	if (t) {
		t->url = dup_or_null(url->u_rawurl, &failed);
		t->host = dup_or_null(url->u_hostname, &failed);
		t->port = dup_or_null(url->u_port, &failed);
		t->server_name = dup_or_null(server_name, &failed);
		t->ca_file = dup_or_null(opts->tls_ca_file, &failed);
		t->cert_file = dup_or_null(opts->tls_cert_file, &failed);
		t->key_file = dup_or_null(opts->tls_key_file, &failed);
	}
	if (failed || !t->url || !t->host || !t->port || !t->server_name || !t->ca_file) {
		dialer_free(t);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	}
	c->tls[c->n_tls++] = t;
	return KMS_OK;
}

void client_tls_free(kms_client *c)
{
	for (size_t i = 0; i < c->n_tls; i++) {
		dialer_free(c->tls[i]);
		c->tls[i] = NULL;
	}
	c->n_tls = 0;
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* ---- the diagnostic handshake ---- */

/* A TCP connection to t within budget_ms, with send and receive bounded by
 * it too; -1 when none. */
static int connect_bounded(const client_tls_dialer *t, int budget_ms)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	if (getaddrinfo(t->host, t->port, &hints, &ai) != 0 || !ai)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return -1;
	}
	int rv = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rv != 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int soerr = 0;
		socklen_t len = sizeof soerr;
		if (poll(&p, 1, budget_ms) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
			rv = 0;
	}
	struct timeval tv = { .tv_sec = budget_ms / 1000,
	                      .tv_usec = (budget_ms % 1000) * 1000 };
	if (rv != 0 || fcntl(fd, F_SETFL, 0) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* What the verification of kmsd's certificate said, as the cause. */
static void describe_verify(const client_tls_dialer *t, long v, char *why, size_t cap)
{
	switch (v) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
		if (is_ip_literal(t->server_name))
			snprintf(why, cap, "kmsd's certificate lacks DNS:%s (NNG's TLS "
			         "matches DNS names, not IP entries): reissue it with one, or "
			         "give --server-name a name it carries", t->server_name);
		else
			snprintf(why, cap, "kmsd's certificate does not name \"%s\": give "
			         "--server-name a name it carries", t->server_name);
		return;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		snprintf(why, cap, "kmsd's certificate is not signed by the CA in %s "
		         "(check --ca)", t->ca_file);
		return;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(why, cap, "kmsd's certificate %s: renew it",
		         v == X509_V_ERR_CERT_HAS_EXPIRED ? "has expired" : "is not valid yet");
		return;
	default:
		snprintf(why, cap, "kmsd's certificate not accepted (%s): check --ca",
		         X509_verify_cert_error_string(v));
		return;
	}
}

/* when as "YYYY-MM-DD HH:MM:SS UTC" in out; false when it is not a time. */
static bool format_time(const ASN1_TIME *when, char *out, size_t cap)
{
	struct tm tm;
	return when && ASN1_TIME_to_tm(when, &tm) == 1 &&
	       strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) > 0;
}

/* kmsd ended the handshake after seeing our certificate (mine: as loaded
 * from t->cert_file): the cause in why. kmsd refuses a certificate outside
 * its validity period whoever signed it, and that much the client can
 * tell from its own copy; which CA kmsd trusts it cannot. */
static void describe_refused(const client_tls_dialer *t, X509 *mine, char *why, size_t cap)
{
	char when[64];
	const ASN1_TIME *not_after = mine ? X509_get0_notAfter(mine) : NULL;
	const ASN1_TIME *not_before = mine ? X509_get0_notBefore(mine) : NULL;
	if (not_after && X509_cmp_current_time(not_after) < 0 &&
	    format_time(not_after, when, sizeof when)) {
		snprintf(why, cap, "kmsd refused the client certificate %s: it expired "
		         "on %s: issue a new one", t->cert_file, when);
		return;
	}
	if (not_before && X509_cmp_current_time(not_before) > 0 &&
	    format_time(not_before, when, sizeof when)) {
		snprintf(why, cap, "kmsd refused the client certificate %s: it is not "
		         "valid until %s: check this machine's clock, or issue one valid "
		         "now", t->cert_file, when);
		return;
	}
	snprintf(why, cap, "kmsd refused the client certificate %s: is it "
	         "signed by kmsd's [tls] client_ca_file?", t->cert_file);
}

/* One handshake like NNG's, with OpenSSL; the cause in why, or false when
 * it could not tell (no connection, or the handshake went through). */
static bool diagnose(const client_tls_dialer *t, int budget_ms, char *why, size_t cap)
{
	bool told = false;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	int fd = -1;
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto out;
	if (SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
		snprintf(why, cap, "cannot read the CA file %s: give --ca a PEM "
		         "certificate", t->ca_file);
		told = true;
		goto out;
	}
	/* Verified by hand after the handshake, so that the server's verdict
	 * on our certificate is seen too. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (t->cert_file &&
	    (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, t->key_file ? t->key_file : t->cert_file,
	                                 SSL_FILETYPE_PEM) != 1))
		goto out; /* NNG took them: nothing to say here */
	if (!(ssl = SSL_new(ctx)))
		goto out;
	/* The check mbedTLS makes: the name against DNS names and the CN. */
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(param, t->server_name, 0) != 1)
		goto out;
	if (!is_ip_literal(t->server_name))
		(void)SSL_set_tlsext_host_name(ssl, t->server_name);
	if ((fd = connect_bounded(t, budget_ms)) < 0 || SSL_set_fd(ssl, fd) != 1)
		goto out;
	ERR_clear_error();
	int done = SSL_connect(ssl);
	X509 *peer = SSL_get0_peer_certificate(ssl);
	long v = SSL_get_verify_result(ssl);
	if (peer && v != X509_V_OK) {
		describe_verify(t, v, why, cap);
		told = true;
	} else if (done != 1 && peer) {
		/* kmsd's certificate passed and kmsd ended the handshake after
		 * seeing ours (an alert, or a closed connection). */
		if (!t->cert_file)
			snprintf(why, cap, "kmsd requires a client certificate: give "
			         "--cert and --cert-key");
		else
			describe_refused(t, SSL_CTX_get0_certificate(ctx), why, cap);
		told = true;
	}
out:
	ERR_clear_error();
	if (ssl)
		SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return told;
}

/* ---- NNG's statistics ---- */

typedef struct dialer_counts {
	uint64_t pipes, auth, closed, refused;
	bool found;
} dialer_counts;

static dialer_counts counts_of(nng_stat *all, const char *url)
{
	dialer_counts n = { 0 };
	/* By URL: NNG 1.5.2's nng_stat_find_dialer finds the first dialer
	 * whatever its id (common/nng_stats.h). */
	nng_stat *mine = kms_nng_stat_scope(all, "dialer", url);
	if (!mine)
		return n;
	n.found = true;
	n.pipes = kms_nng_stat_value(mine, "pipes");
	n.auth = kms_nng_stat_value(mine, "auth");
	n.closed = kms_nng_stat_value(mine, "disconnect") + kms_nng_stat_value(mine, "proto") +
	           kms_nng_stat_value(mine, "other");
	n.refused = kms_nng_stat_value(mine, "refused");
	return n;
}

static void host_port(const client_tls_dialer *t, char *out, size_t cap)
{
	bool v6 = strchr(t->host, ':') != NULL;
	snprintf(out, cap, "%s%s%s:%s", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
}

bool client_tls_failure(kms_client *c, int budget_ms, kms_error *err)
{
	if (c->n_tls == 0)
		return false;
	nng_stat *all = NULL;
	if (nng_stats_get(&all) != 0)
		return false;
	bool told = false;
	for (size_t i = 0; i < c->n_tls && !told; i++) {
		const client_tls_dialer *t = c->tls[i];
		dialer_counts n = counts_of(all, t->url);
		if (!n.found || n.pipes > 0)
			continue;
		char where[300], why[600];
		host_port(t, where, sizeof where);
		if (n.auth > 0 || n.closed > 0) {
			if (!diagnose(t, budget_ms, why, sizeof why))
				snprintf(why, sizeof why, "%s: check --ca, --server-name "
				         "and --cert", n.auth > 0 ? "certificate not accepted"
				                                  : "connection closed");
			(void)client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
			                  "TLS handshake with %s failed: %s", where, why);
			told = true;
		} else if (n.refused > 0) {
			(void)client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
			                  "nothing listens at %s (connection refused): is kmsd "
			                  "running there?",
			                  where);
			told = true;
		}
	}
	nng_stats_free(all);
	return told;
}
