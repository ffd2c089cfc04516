#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/e2e_ops.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <nng/protocol/reqrep0/req.h>

#include "hsm/hsm.h"

#define KEY_VERSION_ID_LEN 20 /* CKA_ID of a key version: 16 id bytes || u32 BE */
#define LIST_PAGE 100

uint64_t e2e_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void e2e_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

Kms__Response *e2e_create_key(harness *h)
{
	return e2e_create_key_as(h, KMS__KEY_PROTECTION__KEY_PROTECTION_UNSPECIFIED);
}

Kms__Response *e2e_create_key_as(harness *h, Kms__KeyProtection protection)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "e2e key";
	ck.protection = protection;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	return harness_call(h, &req);
}

Kms__Response *e2e_encrypt(harness *h, const char *key_ref, const uint8_t *plaintext,
                           size_t len)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key_ref;
	e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
	e.plaintext.len = len;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return harness_call(h, &req);
}

Kms__Response *e2e_decrypt(harness *h, const uint8_t *blob, size_t len)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.ciphertext_blob.data = (uint8_t *)(uintptr_t)blob;
	d.ciphertext_blob.len = len;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return harness_call(h, &req);
}

Kms__Response *e2e_describe(harness *h, const char *key_ref)
{
	Kms__DescribeKeyRequest d = KMS__DESCRIBE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.key_id = (char *)(uintptr_t)key_ref;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
	req.describe_key = &d;
	return harness_call(h, &req);
}

Kms__Response *e2e_rotate(harness *h, const char *key_ref)
{
	Kms__RotateKeyRequest r = KMS__ROTATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	r.key_id = (char *)(uintptr_t)key_ref;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEY;
	req.rotate_key = &r;
	return harness_call(h, &req);
}

Kms__Response *e2e_schedule_deletion(harness *h, const char *key_ref, uint32_t days)
{
	Kms__ScheduleKeyDeletionRequest s = KMS__SCHEDULE_KEY_DELETION_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	s.key_id = (char *)(uintptr_t)key_ref;
	s.pending_window_days = days;
	req.op_case = KMS__REQUEST__OP_SCHEDULE_KEY_DELETION;
	req.schedule_key_deletion = &s;
	return harness_call(h, &req);
}

bool e2e_socket(const harness *h, int send_ms, int recv_ms, nng_socket *out)
{
	if (nng_req0_open(out) != 0)
		return false;
	nng_socket_set_ms(*out, NNG_OPT_RECVTIMEO, recv_ms);
	nng_socket_set_ms(*out, NNG_OPT_SENDTIMEO, send_ms);
	/* No resend: a request in flight when the daemon dies fails at once
	 * instead of being replayed to the next daemon. */
	nng_socket_set_ms(*out, NNG_OPT_REQ_RESENDTIME, 0);
	nng_socket_set_ms(*out, NNG_OPT_RECONNMINT, 10);
	nng_socket_set_ms(*out, NNG_OPT_RECONNMAXT, 50);
	nng_socket_set_size(*out, NNG_OPT_RECVMAXSZ, 1u << 20);
	if (nng_dial(*out, h->ipc_url, NULL, 0) != 0) {
		(void)kms_nng_close_bounded(*out, TEST_CLOSE_WAIT_MS);
		return false;
	}
	return true;
}

static Kms__Response *call_on(nng_socket s, Kms__Request *req)
{
	req->schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	size_t n = kms__request__get_packed_size(req);
	uint8_t *packed = malloc(n ? n : 1);
	if (!packed)
		return NULL;
	kms__request__pack(req, packed);
	int rv = nng_send(s, packed, n, 0);
	free(packed);
	if (rv != 0)
		return NULL;
	void *reply = NULL;
	size_t len = 0;
	if (nng_recv(s, &reply, &len, NNG_FLAG_ALLOC) != 0)
		return NULL;
	Kms__Response *resp = kms__response__unpack(NULL, len, reply);
	nng_free(reply, len);
	return resp;
}

Kms__Response *e2e_create_key_on(nng_socket s, const char *request_id)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "e2e kill-9 key";
	req.request_id = (char *)(uintptr_t)request_id;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	return call_on(s, &req);
}

Kms__Response *e2e_encrypt_on(nng_socket s, const char *request_id, const char *key_ref,
                              const uint8_t *plaintext, size_t len)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key_ref;
	e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
	e.plaintext.len = len;
	req.request_id = (char *)(uintptr_t)request_id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call_on(s, &req);
}

Kms__Response *e2e_decrypt_on(nng_socket s, const char *request_id, const uint8_t *blob,
                              size_t len)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.ciphertext_blob.data = (uint8_t *)(uintptr_t)blob;
	d.ciphertext_blob.len = len;
	req.request_id = (char *)(uintptr_t)request_id;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return call_on(s, &req);
}

bool e2e_roundtrip(harness *h, const char *key_ref, char *why, size_t why_len)
{
	uint8_t plaintext[48];
	bool ok = false;
	Kms__Response *enc = NULL, *dec = NULL;
	if (getrandom(plaintext, sizeof plaintext, 0) != (ssize_t)sizeof plaintext) {
		snprintf(why, why_len, "getrandom failed");
		return false;
	}
	enc = e2e_encrypt(h, key_ref, plaintext, sizeof plaintext);
	if (!enc || enc->status != KMS__STATUS__OK ||
	    enc->result_case != KMS__RESPONSE__RESULT_ENCRYPT) {
		snprintf(why, why_len, "Encrypt under %s: %s", key_ref,
		         enc ? enc->message : "no reply");
		goto out;
	}
	dec = e2e_decrypt(h, enc->encrypt->ciphertext_blob.data, enc->encrypt->ciphertext_blob.len);
	if (!dec || dec->status != KMS__STATUS__OK ||
	    dec->result_case != KMS__RESPONSE__RESULT_DECRYPT) {
		snprintf(why, why_len, "Decrypt under %s: %s", key_ref,
		         dec ? dec->message : "no reply");
		goto out;
	}
	if (dec->decrypt->plaintext.len != sizeof plaintext ||
	    memcmp(dec->decrypt->plaintext.data, plaintext, sizeof plaintext) != 0) {
		snprintf(why, why_len, "Decrypt under %s returned other bytes", key_ref);
		goto out;
	}
	ok = true;
out:
	if (enc)
		kms__response__free_unpacked(enc, NULL);
	if (dec)
		kms__response__free_unpacked(dec, NULL);
	return ok;
}

static bool key_from_wire(const Kms__KeyMetadata *m, e2e_key *out)
{
	memset(out, 0, sizeof *out);
	if (!m->key_id || strlen(m->key_id) >= sizeof out->id || m->n_versions > E2E_VERSIONS_MAX)
		return false;
	snprintf(out->id, sizeof out->id, "%s", m->key_id);
	out->state = m->key_state;
	out->protection = m->protection;
	out->primary = m->primary_version;
	out->n_versions = m->n_versions;
	for (size_t i = 0; i < m->n_versions; i++) {
		out->versions[i] = m->versions[i]->version;
		out->encryptions[i] = m->versions[i]->encryptions;
	}
	return true;
}

bool e2e_list_keys(harness *h, e2e_key **keys, size_t *n)
{
	char page_token[128] = "";
	size_t cap = LIST_PAGE, count = 0;
	e2e_key *all = calloc(cap, sizeof *all);
	*keys = NULL;
	*n = 0;
	if (!all)
		return false;
	for (int page = 0; page < E2E_KEYS_MAX / LIST_PAGE + 1; page++) {
		Kms__ListKeysRequest l = KMS__LIST_KEYS_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		l.limit = LIST_PAGE;
		l.page_token = page_token;
		req.op_case = KMS__REQUEST__OP_LIST_KEYS;
		req.list_keys = &l;
		Kms__Response *resp = harness_call(h, &req);
		if (!resp || resp->status != KMS__STATUS__OK ||
		    resp->result_case != KMS__RESPONSE__RESULT_LIST_KEYS) {
			fprintf(stderr, "e2e: ListKeys: %s\n", resp ? resp->message : "no reply");
			if (resp)
				kms__response__free_unpacked(resp, NULL);
			free(all);
			return false;
		}
		bool ok = count + resp->list_keys->n_keys <= E2E_KEYS_MAX;
		if (ok && count + resp->list_keys->n_keys > cap) {
			size_t bigger = cap * 2 > E2E_KEYS_MAX ? E2E_KEYS_MAX : cap * 2;
			e2e_key *grown = bigger >= count + resp->list_keys->n_keys
			                         ? realloc(all, bigger * sizeof *all)
			                         : NULL;
			ok = grown != NULL;
			if (ok) {
				all = grown;
				cap = bigger;
			}
		}
		for (size_t i = 0; ok && i < resp->list_keys->n_keys; i++)
			ok = key_from_wire(resp->list_keys->keys[i], &all[count++]);
		const char *next = resp->list_keys->next_page_token;
		ok = ok && next && strlen(next) < sizeof page_token;
		if (ok)
			snprintf(page_token, sizeof page_token, "%s", next);
		kms__response__free_unpacked(resp, NULL);
		if (!ok) {
			fprintf(stderr, "e2e: ListKeys: a page did not fit the test's limits\n");
			free(all);
			return false;
		}
		if (!page_token[0]) {
			*keys = all;
			*n = count;
			return true;
		}
	}
	fprintf(stderr, "e2e: ListKeys: more pages than the test allows\n");
	free(all);
	return false;
}

const e2e_key *e2e_find_key(const e2e_key *keys, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(keys[i].id, id))
			return &keys[i];
	return NULL;
}

bool e2e_wait_exit(harness *h, int timeout_ms, int *exit_code)
{
	if (h->ipc_open) {
		(void)kms_nng_close_bounded(h->ipc, TEST_CLOSE_WAIT_MS);
		h->ipc_open = false;
	}
	*exit_code = -1;
	if (h->pid <= 0)
		return false;
	uint64_t deadline = e2e_now_ms() + (uint64_t)timeout_ms;
	while (e2e_now_ms() < deadline) {
		int status;
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			h->pid = 0;
			*exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			return true;
		}
		e2e_sleep_ms(10);
	}
	harness_kill9(h);
	return false;
}

bool e2e_blob_parse(const uint8_t *blob, size_t len, e2e_blob_header *out)
{
	memset(out, 0, sizeof *out);
	if (len < 25 || memcmp(blob, "KMS", 3) != 0 || blob[3] != 1)
		return false;
	memcpy(out->key_id, blob + 4, 16);
	out->key_version = (uint32_t)blob[20] << 24 | (uint32_t)blob[21] << 16 |
	                   (uint32_t)blob[22] << 8 | blob[23];
	size_t region_len = blob[24];
	if (region_len < 1 || region_len > 32 || len < 25 + region_len + 12 + 4)
		return false;
	memcpy(out->region, blob + 25, region_len);
	const uint8_t *p = blob + 25 + region_len + 12;
	size_t ct_len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	return len == 25 + region_len + 12 + 4 + ct_len + 16;
}

void e2e_key_id_text(const uint8_t id[16], char out[E2E_KEY_ID_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	out[0] = 'k';
	out[1] = '-';
	for (size_t i = 0; i < 16; i++) {
		out[2 + 2 * i] = hex[id[i] >> 4];
		out[3 + 2 * i] = hex[id[i] & 15];
	}
	out[34] = '\0';
}

size_t e2e_log_size(const harness *h)
{
	struct stat st;
	return stat(h->log, &st) == 0 ? (size_t)st.st_size : 0;
}

bool e2e_log_contains_since(const harness *h, size_t offset, const char *needle)
{
	size_t len = 0;
	char *log = harness_read_file(h->log, &len);
	bool found = log && offset <= len && strstr(log + offset, needle);
	free(log);
	return found;
}

/* ---- the token ---- */

typedef struct version_ids {
	uint8_t (*ids)[KEY_VERSION_ID_LEN];
	size_t n, cap;
} version_ids;

static kms_status collect(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	version_ids *v = ctx;
	(void)kind;
	if (id->len != KEY_VERSION_ID_LEN)
		return KMS_OK;
	uint32_t version = (uint32_t)id->bytes[16] << 24 | (uint32_t)id->bytes[17] << 16 |
	                   (uint32_t)id->bytes[18] << 8 | id->bytes[19];
	if (version == 0)
		return KMS_OK;
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 64;
		void *grown = realloc(v->ids, cap * sizeof *v->ids);
		if (!grown)
			return KMS_INTERNAL;
		v->ids = grown;
		v->cap = cap;
	}
	memcpy(v->ids[v->n++], id->bytes, KEY_VERSION_ID_LEN);
	return KMS_OK;
}

static bool key_has_version(const e2e_key *k, uint32_t version)
{
	for (size_t i = 0; i < k->n_versions; i++)
		if (k->versions[i] == version)
			return true;
	return false;
}

static bool ids_contain(const version_ids *v, const char *key_id, uint32_t version)
{
	for (size_t i = 0; i < v->n; i++) {
		char text[E2E_KEY_ID_SIZE];
		e2e_key_id_text(v->ids[i], text);
		uint32_t ver = (uint32_t)v->ids[i][16] << 24 | (uint32_t)v->ids[i][17] << 16 |
		               (uint32_t)v->ids[i][18] << 8 | v->ids[i][19];
		if (ver == version && !strcmp(text, key_id))
			return true;
	}
	return false;
}

bool e2e_token_matches(const e2e_key *keys, size_t n, size_t *n_objects, char *why,
                       size_t why_len)
{
	hsm_config config = {
		.module_path = getenv("KMS_TEST_MODULE"),
		.token_label = getenv("KMS_TEST_TOKEN_LABEL"),
		.pin_file = getenv("KMS_TEST_PIN_FILE"),
	};
	hsm *token = NULL;
	version_ids found = { 0 };
	bool ok = false;
	if (n_objects)
		*n_objects = 0;
	if (hsm_open(&config, &token) != KMS_OK) {
		snprintf(why, why_len, "hsm_open failed");
		return false;
	}
	if (hsm_objects_list(token, collect, &found) != KMS_OK) {
		snprintf(why, why_len, "hsm_objects_list failed");
		goto out;
	}
	if (n_objects)
		*n_objects = found.n;
	/* Every object on the token is a live version of a listed key ... */
	for (size_t i = 0; i < found.n; i++) {
		char text[E2E_KEY_ID_SIZE];
		e2e_key_id_text(found.ids[i], text);
		uint32_t version = (uint32_t)found.ids[i][16] << 24 |
		                   (uint32_t)found.ids[i][17] << 16 |
		                   (uint32_t)found.ids[i][18] << 8 | found.ids[i][19];
		const e2e_key *k = e2e_find_key(keys, n, text);
		if (!k || k->state == KMS__KEY_STATE__DESTROYED || !key_has_version(k, version) ||
		    k->protection != KMS__KEY_PROTECTION__HSM_RESIDENT) {
			snprintf(why, why_len, "orphan HSM object %s:v%u (key %s)", text,
			         (unsigned)version,
			         !k ? "not listed"
			         : k->state == KMS__KEY_STATE__DESTROYED ? "DESTROYED"
			         : k->protection != KMS__KEY_PROTECTION__HSM_RESIDENT
			                 ? "wrapped: its versions are no token objects"
			                 : "listed without that version");
			goto out;
		}
	}
	/* ... and every live version of a listed key has its object. */
	for (size_t i = 0; i < n; i++) {
		if (keys[i].state == KMS__KEY_STATE__DESTROYED ||
		    keys[i].protection != KMS__KEY_PROTECTION__HSM_RESIDENT)
			continue;
		for (size_t j = 0; j < keys[i].n_versions; j++)
			if (!ids_contain(&found, keys[i].id, keys[i].versions[j])) {
				snprintf(why, why_len, "listed version %s:v%u has no HSM object",
				         keys[i].id, (unsigned)keys[i].versions[j]);
				goto out;
			}
	}
	ok = true;
out:
	free(found.ids);
	hsm_close(token);
	return ok;
}

uint64_t e2e_health_ms(harness *h)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	uint64_t t0 = e2e_now_ms();
	Kms__Response *r = harness_call(h, &req);
	uint64_t took = e2e_now_ms() - t0;
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	return took;
}

unsigned e2e_kmsd_fds(const harness *h)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)h->pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) /* bounded by the directory */
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}
