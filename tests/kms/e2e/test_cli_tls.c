/*
 * The real kms-admin over TLS against a real kmsd, the way a new user meets
 * it: certificates from scripts/make-certs (what scripts/dev-up runs), the
 * address as dev-up prints it (tls+tcp://127.0.0.1:PORT) and no
 * --server-name.
 *
 *   - `health` answers: the server certificate carries 127.0.0.1 as a DNS
 *     name too, which is all NNG's TLS (mbedTLS 2.28) matches; it used to
 *     end in "no answer ... within 5000 ms";
 *   - each TLS failure used to look like that same timeout and, when the
 *     user gave up before kmsd's next report, left kmsd's log empty. Now
 *     each exits 3 with one line naming the endpoint and the cause, and
 *     kmsd's log gains a line naming the cause category: no client
 *     certificate, a server name the certificate lacks (an IP address it
 *     lacks as a DNS name), a CA that did not sign kmsd's certificate, a
 *     client certificate from a CA kmsd does not trust, or one from the
 *     right CA that has expired or is not valid yet (made here with
 *     OpenSSL: notAfter in 2020, notBefore in 2090); and nothing
 *     listening is "connection refused", not a timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define CLI_WAIT_MS 20000     /* our bound on one kms-admin run */
#define LOG_WAIT_MS 15000     /* kmsd reports failures every tick (1 s here) */
#define CALL_TIMEOUT "3000"   /* kms-admin's own bound on the call */
#define FAILED_LINE "TLS connections failed before a request"

static harness H;
static char ca[700], cert[700], key[700];
static char other_ca[700], other_cert[700], other_key[700]; /* another CA's */
static char port_text[16];
/* The right CA's client certificates outside their validity period. */
static char expired_cert[700], expired_key[700];
static char future_cert[700], future_key[700];
/* Issued the same way, valid 2020 to 2090: only the dates differ. */
static char dated_cert[700], dated_key[700];

/* Writes x (and k, mode 0600) as PEM to crt_path and key_path. */
static bool write_pem(const char *crt_path, const char *key_path, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(crt_path, "w");
	bool ok = f && PEM_write_X509(f, x) == 1;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok)
		return false;
	int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f && fd >= 0)
		close(fd);
	ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
	if (f && fclose(f) != 0)
		ok = false;
	return ok;
}

/* A client certificate (new P-256 key) signed by the harness's CA
 * (dir/ca.crt, dir/ca.key) valid from not_before to not_after
 * ("YYYYMMDDHHMMSSZ"), as scripts/make-certs issues one but for the dates;
 * written to crt_path and key_path. */
static bool issue_dated(const char *dir, long serial, const char *not_before,
                        const char *not_after, const char *crt_path, const char *key_path)
{
	char path[800];
	X509 *ca_crt = NULL, *x = NULL;
	EVP_PKEY *ca_key = NULL, *k = NULL;
	X509_EXTENSION *eku = NULL;
	bool ok = false;
	snprintf(path, sizeof path, "%s/ca.crt", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		ca_crt = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	snprintf(path, sizeof path, "%s/ca.key", dir);
	if ((f = fopen(path, "r"))) {
		ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!ca_crt || !ca_key || !(k = EVP_EC_gen("P-256")) || !(x = X509_new()))
		goto out;
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, ca_crt, x, NULL, NULL, 0);
	X509_NAME *name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                               (const unsigned char *)"kms-dated-client", -1, -1,
	                               0) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_crt)) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notBefore(x), not_before) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notAfter(x), not_after) != 1 ||
	    X509_set_pubkey(x, k) != 1 ||
	    !(eku = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth")) ||
	    X509_add_ext(x, eku, -1) != 1 || X509_sign(x, ca_key, EVP_sha256()) <= 0)
		goto out;
	ok = write_pem(crt_path, key_path, x, k);
out:
	X509_EXTENSION_free(eku);
	X509_free(x);
	EVP_PKEY_free(k);
	X509_free(ca_crt);
	EVP_PKEY_free(ca_key);
	return ok;
}

static int start(void **state)
{
	(void)state;
	harness_options o = { .with_tls = true,
	                      .extra_config = "[limits]\ntick_seconds = 1\n" };
	if (!harness_start(&H, &o))
		return -1;
	snprintf(ca, sizeof ca, "%s/tls/ca.crt", H.dir);
	snprintf(cert, sizeof cert, "%s/tls/client.crt", H.dir);
	snprintf(key, sizeof key, "%s/tls/client.key", H.dir);
	/* A second, unrelated development CA and its client certificate. */
	char cmd[1600];
	snprintf(cmd, sizeof cmd, "%s/make-certs %s/other-tls", getenv("KMS_TEST_SCRIPTS"), H.dir);
	if (system(cmd) != 0)
		return -1;
	snprintf(other_ca, sizeof other_ca, "%s/other-tls/ca.crt", H.dir);
	snprintf(other_cert, sizeof other_cert, "%s/other-tls/client.crt", H.dir);
	snprintf(other_key, sizeof other_key, "%s/other-tls/client.key", H.dir);
	/* The right CA's, expired in 2020 and valid only from 2090. */
	char tls_dir[700];
	snprintf(tls_dir, sizeof tls_dir, "%s/tls", H.dir);
	snprintf(expired_cert, sizeof expired_cert, "%s/tls/expired.crt", H.dir);
	snprintf(expired_key, sizeof expired_key, "%s/tls/expired.key", H.dir);
	snprintf(future_cert, sizeof future_cert, "%s/tls/future.crt", H.dir);
	snprintf(future_key, sizeof future_key, "%s/tls/future.key", H.dir);
	snprintf(dated_cert, sizeof dated_cert, "%s/tls/dated.crt", H.dir);
	snprintf(dated_key, sizeof dated_key, "%s/tls/dated.key", H.dir);
	if (!issue_dated(tls_dir, 9001, "20200101000000Z", "20200201000000Z", expired_cert,
	                 expired_key) ||
	    !issue_dated(tls_dir, 9002, "20900101000000Z", "20910101000000Z", future_cert,
	                 future_key) ||
	    !issue_dated(tls_dir, 9003, "20200101000000Z", "20900101000000Z", dated_cert,
	                 dated_key))
		return -1;
	snprintf(port_text, sizeof port_text, "%d", H.tls_port);
	return 0;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

/* Runs kms-admin ARGS (NULL-terminated), bounded by CLI_WAIT_MS; its exit
 * code; *out and *err are the outputs (free them). */
static int admin(const char *const *args, char **out, char **err)
{
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	run_bin_options o = { .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, args, &o);
	*out = r.out;
	*err = r.err;
	return r.code;
}

/* How many report lines kmsd's log holds. */
static unsigned failed_lines(void)
{
	char *log = harness_read_file(H.log, NULL);
	unsigned n = 0;
	for (const char *p = log; p && (p = strstr(p, FAILED_LINE)); p++)
		n++;
	free(log);
	return n;
}

/* Waits (bounded) for kmsd's log to hold more report lines than before,
 * the newest of them naming cause. */
static void expect_kmsd_logged(unsigned before, const char *cause)
{
	uint64_t deadline = e2e_now_ms() + LOG_WAIT_MS;
	while (failed_lines() <= before && e2e_now_ms() < deadline)
		e2e_sleep_ms(50); /* polling the log file for the line, bounded */
	if (failed_lines() <= before)
		fail_msg("kmsd logged no failed TLS connection within %d ms (%s)",
		         LOG_WAIT_MS, H.log);
	char *log = harness_read_file(H.log, NULL);
	assert_non_null(log);
	const char *last = log, *p = log;
	while ((p = strstr(p, FAILED_LINE)))
		last = p++;
	const char *eol = strchr(last, '\n');
	size_t len = eol ? (size_t)(eol - last) : strlen(last);
	printf("# kmsd: %.*s\n", (int)len, last);
	char *found = strstr(last, cause);
	if (!found || (eol && found > eol))
		fail_msg("kmsd's report does not name \"%s\": %.*s", cause, (int)len, last);
	free(log);
}

/* kms-admin health over TLS with args after the endpoint: exit 3, one line
 * on stderr holding want, and kmsd logs the failure naming cause. */
static void expect_tls_failure(const char *const *args, const char *want, const char *cause)
{
	unsigned before = failed_lines();
	char *out, *err;
	int code = admin(args, &out, &err);
	printf("# kms-admin: exit %d: %s", code, err);
	if (code != 3)
		fail_msg("exit %d, not 3\nstdout: %s\nstderr: %s", code, out, err);
	if (!strstr(err, want))
		fail_msg("stderr does not say \"%s\": %s", want, err);
	char where[64];
	snprintf(where, sizeof where, "TLS handshake with 127.0.0.1:%d failed: ", H.tls_port);
	if (!strstr(err, where))
		fail_msg("stderr does not name the endpoint (\"%s\"): %s", where, err);
	const char *nl = strchr(err, '\n');
	if (!nl || nl[1] != '\0')
		fail_msg("not one line: %s", err);
	if (strstr(err, "no answer"))
		fail_msg("still reads as a timeout: %s", err);
	free(out);
	free(err);
	if (cause)
		expect_kmsd_logged(before, cause);
}

#define ENDPOINT "--endpoint", H.tls_url
#define CALL "health", "--timeout", CALL_TIMEOUT

static void printed_address_works(void **state)
{
	(void)state;
	/* Exactly dev-up's address form: no --server-name. */
	assert_non_null(strstr(H.tls_url, "tls+tcp://127.0.0.1:"));
	/* Over tls+tcp:// every request is signed: with the credentials file
	 * `kmsd --bootstrap-admin` wrote for the harness. */
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", cert, "--cert-key", key,
	                       "--credentials", H.credentials, "health", NULL };
	char *out, *err;
	int code = admin(args, &out, &err);
	if (code != 0 || !strstr(out, "hsm:") || !strstr(out, "ok"))
		fail_msg("kms-admin health over %s: exit %d\nstdout: %s\nstderr: %s",
		         H.tls_url, code, out, err);
	free(out);
	free(err);
}

static void no_client_certificate(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, CALL, NULL };
	expect_tls_failure(args, "kmsd requires a client certificate: give --cert and --cert-key",
	                   "certificate refused in the handshake");
}

static void server_name_not_in_certificate(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", cert, "--cert-key", key,
	                       "--server-name", "kms.example", CALL, NULL };
	expect_tls_failure(args, "kmsd's certificate does not name \"kms.example\"",
	                   "TLS connections failed"); /* NNG gives no category for it */
}

/* An IP address the certificate does not carry as a DNS name (what a
 * certificate with only IP:127.0.0.1 did to the printed address): the line
 * says what NNG's TLS matches and what to add. */
static void ip_address_not_a_dns_name(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", cert, "--cert-key", key,
	                       "--server-name", "10.0.0.1", CALL, NULL };
	expect_tls_failure(args, "kmsd's certificate lacks DNS:10.0.0.1 (NNG's TLS matches DNS "
	                   "names, not IP entries)", "TLS connections failed");
}

static void wrong_ca(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", other_ca, "--cert", cert, "--cert-key", key,
	                       CALL, NULL };
	char want[800];
	snprintf(want, sizeof want, "kmsd's certificate is not signed by the CA in %s", other_ca);
	expect_tls_failure(args, want, "TLS connections failed");
}

static void client_certificate_from_another_ca(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", other_cert, "--cert-key",
	                       other_key, CALL, NULL };
	char want[800];
	snprintf(want, sizeof want, "kmsd refused the client certificate %s", other_cert);
	expect_tls_failure(args, want, "certificate refused in the handshake");
}

/* The control for the two below: a certificate issued as they are, within
 * its period, is taken, so what kmsd refuses in them is the dates. */
static void dated_certificate_in_its_period_works(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", dated_cert, "--cert-key",
	                       dated_key, "--credentials", H.credentials, CALL, NULL };
	char *out, *err;
	int code = admin(args, &out, &err);
	if (code != 0 || !strstr(out, "hsm:"))
		fail_msg("health with %s: exit %d\nstdout: %s\nstderr: %s", dated_cert, code,
		         out, err);
	free(out);
	free(err);
}

/* Signed by the right CA but past its notAfter: kmsd refuses it in the
 * handshake, and the line says it expired, not that the CA is wrong. */
static void expired_client_certificate(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", expired_cert, "--cert-key",
	                       expired_key, CALL, NULL };
	char want[800];
	snprintf(want, sizeof want, "kmsd refused the client certificate %s: it expired on "
	         "2020-02-01 00:00:00 UTC", expired_cert);
	expect_tls_failure(args, want, "certificate refused in the handshake");
}

/* Signed by the right CA, notBefore in the future: refused the same way. */
static void client_certificate_not_yet_valid(void **state)
{
	(void)state;
	const char *args[] = { ENDPOINT, "--ca", ca, "--cert", future_cert, "--cert-key",
	                       future_key, CALL, NULL };
	char want[800];
	snprintf(want, sizeof want, "kmsd refused the client certificate %s: it is not valid "
	         "until 2090-01-01 00:00:00 UTC", future_cert);
	expect_tls_failure(args, want, "certificate refused in the handshake");
}

static void nothing_listening(void **state)
{
	(void)state;
	int port = harness_free_port();
	assert_true(port > 0);
	char url[64];
	snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port);
	const char *args[] = { "--endpoint", url, "--ca", ca, "--cert", cert, "--cert-key", key,
	                       CALL, NULL };
	char *out, *err;
	int code = admin(args, &out, &err);
	printf("# kms-admin: exit %d: %s", code, err);
	assert_int_equal(code, 3);
	char want[128];
	snprintf(want, sizeof want, "nothing listens at 127.0.0.1:%d (connection refused)", port);
	if (!strstr(err, want))
		fail_msg("stderr does not say \"%s\": %s", want, err);
	free(out);
	free(err);
}

/* An ipc endpoint whose socket file is left from a stopped kmsd, listed
 * before kmsd's own: the next one is tried, and health answers. */
static void next_endpoint_after_a_stale_socket(void **state)
{
	(void)state;
	char stale[700], url[720];
	snprintf(stale, sizeof stale, "%s/stale.sock", H.dir);
	snprintf(url, sizeof url, "ipc://%s", stale);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(stale) < sizeof sa.sun_path);
	memcpy(sa.sun_path, stale, strlen(stale) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd); /* bound, never listened on: connect(2) is refused */
	const char *args[] = { "--endpoint", url, "--endpoint", H.ipc_url, "health", NULL };
	char *out, *err;
	int code = admin(args, &out, &err);
	if (code != 0 || !strstr(out, "hsm:"))
		fail_msg("health over %s then %s: exit %d\nstdout: %s\nstderr: %s", url,
		         H.ipc_url, code, out, err);
	free(out);
	free(err);
	unlink(stale);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(printed_address_works),
		cmocka_unit_test(no_client_certificate),
		cmocka_unit_test(server_name_not_in_certificate),
		cmocka_unit_test(ip_address_not_a_dns_name),
		cmocka_unit_test(wrong_ca),
		cmocka_unit_test(client_certificate_from_another_ca),
		cmocka_unit_test(dated_certificate_in_its_period_works),
		cmocka_unit_test(expired_client_certificate),
		cmocka_unit_test(client_certificate_not_yet_valid),
		cmocka_unit_test(nothing_listening),
		cmocka_unit_test(next_endpoint_after_a_stale_socket),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
