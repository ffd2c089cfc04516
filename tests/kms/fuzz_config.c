/*
 * fuzz_config: kmsd's config reader (kms/config.c, kmsd_config_load) over
 * any INI text.
 *
 * The input is the file's text. Each '@' in it is replaced by a throw-away
 * directory the target makes once, holding: pin (mode 0600, the PIN), open
 * (0644), policy (a small key policy), empty (0 bytes), cert (0644); so
 * "pin_file = @/pin" reaches the file checks of a whole config. The text
 * is written to a memfd and loaded through its /proc/self/fd path, the
 * production code's own fopen.
 *
 * Invariants:
 *   - it returns KMS_OK or KMS_INVALID_ARGUMENT, never crashes or hangs;
 *   - a refusal's message starts "config", is one line of printable ASCII
 *     bytes or UTF-8 (no control character) and never holds the PIN
 *     (unless the text itself does);
 *   - a loaded config satisfies docs/config.md's rules: data_dir, token
 *     label, a PIN source and 1..8 listen URLs of a known scheme (tcp://
 *     only with insecure_dev; tls+tcp:// only with the TLS files), every
 *     string NUL-terminated inside its field, every count within its
 *     bound, workers 1..256, the GCM reserve at most the limit, an origin;
 *   - loading the same text twice gives the same config, byte for byte.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/config.h"
#include "tests/support/fuzz.h"

#define TEXT_MAX 65536
#define PIN_TEXT "fuzz-pin-0x5eC12e7"

static char dir[64];
static int fd = -1;
static char fd_path[64];

static void put_file(const char *name, const char *text, mode_t mode)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	FUZZ_CHECK(f != NULL);
	fputs(text, f);
	FUZZ_CHECK(fclose(f) == 0);
	FUZZ_CHECK(chmod(path, mode) == 0);
}

static void remove_files(void)
{
	static const char *const names[] = { "pin", "open", "policy", "empty", "cert" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[128];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void setup(void)
{
	if (fd >= 0)
		return;
	snprintf(dir, sizeof dir, "/tmp/kms-fuzz-config-XXXXXX");
	FUZZ_CHECK(mkdtemp(dir) != NULL);
	put_file("pin", PIN_TEXT "\n", 0600);
	put_file("open", "x\n", 0644);
	put_file("policy", "{\"Version\":\"2024-01-01\",\"Statement\":[]}\n", 0600);
	put_file("empty", "", 0600);
	put_file("cert", "not a certificate\n", 0644);
	atexit(remove_files);
	fd = memfd_create("kmsd.conf", 0);
	FUZZ_CHECK(fd >= 0);
	snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", fd);
}

/* The text with '@' expanded, into the memfd. */
static void write_text(const uint8_t *data, size_t size)
{
	static char text[TEXT_MAX * 2];
	size_t n = 0, dir_len = strlen(dir);
	for (size_t i = 0; i < size && n + dir_len < sizeof text; i++) {
		if (data[i] == '@') {
			memcpy(text + n, dir, dir_len);
			n += dir_len;
		} else {
			text[n++] = (char)data[i];
		}
	}
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, text, n, 0) == (ssize_t)n);
}

static bool terminated(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

static void check_refusal(kms_status st, bool pin_in_text)
{
	FUZZ_CHECK(st == KMS_INVALID_ARGUMENT);
	const char *m = kms_error_message();
	FUZZ_CHECK(strncmp(m, "config", 6) == 0);
	for (const char *p = m; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
	/* The PIN file's content: never read here, never shown. */
	FUZZ_CHECK(pin_in_text || !strstr(m, PIN_TEXT));
}

static bool scheme(const char *url, const char *prefix)
{
	return strncmp(url, prefix, strlen(prefix)) == 0;
}

static void check_loaded(const kmsd_config *c)
{
	FUZZ_CHECK(terminated(c->region, sizeof c->region) && c->region[0]);
	FUZZ_CHECK(terminated(c->data_dir, sizeof c->data_dir) && c->data_dir[0]);
	FUZZ_CHECK(c->workers >= 1 && c->workers <= 256);
	FUZZ_CHECK(c->n_listen >= 1 && c->n_listen <= KMSD_MAX_LISTEN);
	bool tls = false;
	for (size_t i = 0; i < c->n_listen; i++) {
		const char *u = c->listen[i];
		FUZZ_CHECK(terminated(u, sizeof c->listen[i]));
		FUZZ_CHECK(scheme(u, "ipc://") || scheme(u, "tls+tcp://") || scheme(u, "tcp://"));
		FUZZ_CHECK(!scheme(u, "tcp://") || c->insecure_dev);
		tls |= scheme(u, "tls+tcp://");
	}
	if (tls)
		FUZZ_CHECK(c->tls_cert_file[0] && c->tls_key_file[0] && c->tls_client_ca_file[0]);
	FUZZ_CHECK(terminated(c->tls_cert_file, sizeof c->tls_cert_file));
	FUZZ_CHECK(terminated(c->tls_key_file, sizeof c->tls_key_file));
	FUZZ_CHECK(terminated(c->tls_client_ca_file, sizeof c->tls_client_ca_file));
	FUZZ_CHECK(terminated(c->hsm_module, sizeof c->hsm_module));
	FUZZ_CHECK(terminated(c->hsm_token_label, sizeof c->hsm_token_label) &&
	           c->hsm_token_label[0]);
	FUZZ_CHECK(terminated(c->hsm_pin_file, sizeof c->hsm_pin_file));
	FUZZ_CHECK(terminated(c->hsm_pin_env, sizeof c->hsm_pin_env));
	FUZZ_CHECK(c->hsm_pin_file[0] || c->hsm_pin_env[0]);
	FUZZ_CHECK(c->n_hsm_pins <= KMSD_HSM_PINS_MAX);
	for (size_t i = 0; i < c->n_hsm_pins; i++)
		FUZZ_CHECK(terminated(c->hsm_pins[i].manufacturer, sizeof c->hsm_pins[i].manufacturer) &&
		           terminated(c->hsm_pins[i].model, sizeof c->hsm_pins[i].model) &&
		           terminated(c->hsm_pins[i].serial, sizeof c->hsm_pins[i].serial));
	FUZZ_CHECK(c->max_request_bytes > 0 && c->max_locked_bytes > 0);
	FUZZ_CHECK(c->gcm_reserve_block <= c->gcm_max_encryptions);
	FUZZ_CHECK(terminated(c->retention_clock_file, sizeof c->retention_clock_file));
	FUZZ_CHECK(terminated(c->authz_default_key_policy, sizeof c->authz_default_key_policy));
	FUZZ_CHECK(terminated(c->audit_origin, sizeof c->audit_origin) && c->audit_origin[0]);
	FUZZ_CHECK(terminated(c->http_url, sizeof c->http_url));
	FUZZ_CHECK(!c->http_url[0] || scheme(c->http_url, "http://"));
	FUZZ_CHECK(c->n_ipc_principals <= KMSD_MAX_IPC_PRINCIPALS);
	for (size_t i = 0; i < c->n_ipc_principals; i++)
		FUZZ_CHECK(terminated(c->ipc_principals[i].name, sizeof c->ipc_principals[i].name) &&
		           c->ipc_principals[i].name[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static kmsd_config a, b;
	if (size > TEXT_MAX)
		return 0;
	setup();
	write_text(data, size);
	kms_status st = kmsd_config_load(fd_path, &a);
	if (st != KMS_OK) {
		check_refusal(st, memmem(data, size, PIN_TEXT, strlen(PIN_TEXT)) != NULL);
	} else {
		check_loaded(&a);
		FUZZ_CHECK(kmsd_config_load(fd_path, &b) == KMS_OK);
		FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0);
	}
	kms_error_clear();
	return 0;
}
