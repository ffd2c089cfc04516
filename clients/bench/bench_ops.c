/*
 * bench_ops.c: what kms-bench sends. The requests are built once, before
 * the run (the key, a ciphertext to decrypt, the batch), and started
 * through libkmsclient's asynchronous calls, which give each one a fresh
 * request id and, with an access key, its signature.
 */
#include "clients/bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/principals.h>

#include "proto/status_wire.h"

/* mixed: the operations in turn, 2 Encrypt : 2 Decrypt : 1 GenerateDataKey. */
static const bench_op mixed_cycle[] = {
	BENCH_OP_ENCRYPT, BENCH_OP_DECRYPT, BENCH_OP_ENCRYPT,
	BENCH_OP_DECRYPT, BENCH_OP_GENERATE_DATA_KEY,
};
#define MIXED_CYCLE (sizeof mixed_cycle / sizeof mixed_cycle[0])

/* A key id or alias, as given or made. */
#define PLAN_KEY_MAX 256

struct bench_plan {
	bench_op op;
	uint32_t batch;
	char key[PLAN_KEY_MAX + 1];
	bool key_made;            /* by this run: deletion scheduled at the end */
	uint8_t *plaintext;
	size_t plaintext_len;
	uint8_t *blob;            /* a ciphertext of plaintext under key */
	size_t blob_len;
	Kms__Request encrypt;
	Kms__EncryptRequest encrypt_op;
	Kms__Request decrypt;
	Kms__DecryptRequest decrypt_op;
	Kms__Request data_key;
	Kms__GenerateDataKeyRequest data_key_op;
	Kms__Request batch_decrypt;
	Kms__BatchDecryptRequest batch_op;
	Kms__DecryptRequest **batch_items; /* batch pointers to decrypt_op */
	uint8_t *echo;            /* echo: the packed encrypt request */
	size_t echo_len;
};

const char *bench_op_name(bench_op op)
{
	switch (op) {
	case BENCH_OP_ENCRYPT: return "encrypt";
	case BENCH_OP_DECRYPT: return "decrypt";
	case BENCH_OP_GENERATE_DATA_KEY: return "generate-data-key";
	case BENCH_OP_BATCH_DECRYPT: return "batch-decrypt";
	case BENCH_OP_MIXED: return "mixed";
	case BENCH_OP_ECHO: return "echo";
	}
	return "unknown";
}

bool bench_op_parse(const char *name, bench_op *out)
{
	for (bench_op op = BENCH_OP_ENCRYPT; op <= BENCH_OP_ECHO; op++) {
		if (strcmp(name, bench_op_name(op)) == 0) {
			*out = op;
			return true;
		}
	}
	return false;
}

static bool needs_key(bench_op op)
{
	return op != BENCH_OP_ECHO;
}

static bool needs_blob(bench_op op)
{
	return op == BENCH_OP_DECRYPT || op == BENCH_OP_BATCH_DECRYPT || op == BENCH_OP_MIXED;
}

/* ---- setting up, through the blocking calls ---- */

static int report(const char *what, const kms_error *err)
{
	fprintf(stderr, "%s: %s: %s: %s\n", BENCH_PROG, what, kms_status_name(err->status),
	        err->message);
	return err->origin == KMS_ERROR_SERVER ? CLI_EXIT_REFUSED : CLI_EXIT_UNREACHABLE;
}

/* Lets whoever kms-bench acts as use the key it made: a key's default
 * policy lets admins manage it and no one use it. A failure is only a
 * warning (a policy may allow it already; if not, the run's requests say
 * ACCESS_DENIED). */
static void grant_self(kms_client *client, const char *key)
{
	static const char *const ops[] = { "encrypt", "decrypt", "generate_data_key" };
	kms_health health;
	kms_error err;
	if (kms_health_check(client, &health, &err) != KMS_OK) {
		fprintf(stderr, "%s: warning: cannot ask kmsd who this is (%s); no grant made\n",
		        BENCH_PROG, err.message);
		return;
	}
	kms_create_grant_params params = {
		.key_id = key, .grantee = health.principal,
		.operations = ops, .n_operations = sizeof ops / sizeof ops[0],
	};
	if (health.principal && health.principal[0] &&
	    kms_create_grant(client, &params, NULL, &err) != KMS_OK)
		fprintf(stderr, "%s: warning: no grant on %s for %s (%s): requests may be "
		        "refused\n", BENCH_PROG, key, health.principal, err.message);
	kms_health_free(&health);
}

static int make_key(bench_plan *p, kms_client *client)
{
	kms_create_key_params params = { .description = "kms-bench run (deletion scheduled "
	                                                 "when the run ends)" };
	kms_key_metadata md;
	kms_error err;
	if (kms_create_key(client, &params, &md, &err) != KMS_OK)
		return report("cannot create a key for the run (give --key KEY to use one)",
		              &err);
	snprintf(p->key, sizeof p->key, "%s", md.key_id);
	kms_key_metadata_free(&md);
	p->key_made = true;
	grant_self(client, p->key);
	return CLI_EXIT_OK;
}

static int make_blob(bench_plan *p, kms_client *client)
{
	kms_ciphertext ct;
	kms_error err;
	if (kms_encrypt(client, p->key, p->plaintext, p->plaintext_len, NULL, 0, &ct, &err) !=
	    KMS_OK)
		return report("cannot encrypt the ciphertext the run decrypts", &err);
	p->blob = ct.blob;
	p->blob_len = ct.blob_len;
	return CLI_EXIT_OK;
}

static void build_requests(bench_plan *p)
{
	kms__request__init(&p->encrypt);
	kms__encrypt_request__init(&p->encrypt_op);
	p->encrypt_op.key_id = p->key;
	p->encrypt_op.plaintext.data = p->plaintext;
	p->encrypt_op.plaintext.len = p->plaintext_len;
	p->encrypt.op_case = KMS__REQUEST__OP_ENCRYPT;
	p->encrypt.encrypt = &p->encrypt_op;

	kms__request__init(&p->decrypt);
	kms__decrypt_request__init(&p->decrypt_op);
	p->decrypt_op.ciphertext_blob.data = p->blob;
	p->decrypt_op.ciphertext_blob.len = p->blob_len;
	p->decrypt.op_case = KMS__REQUEST__OP_DECRYPT;
	p->decrypt.decrypt = &p->decrypt_op;

	kms__request__init(&p->data_key);
	kms__generate_data_key_request__init(&p->data_key_op);
	p->data_key_op.key_id = p->key;
	p->data_key.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
	p->data_key.generate_data_key = &p->data_key_op;

	kms__request__init(&p->batch_decrypt);
	kms__batch_decrypt_request__init(&p->batch_op);
	for (uint32_t i = 0; p->batch_items && i < p->batch; i++)
		p->batch_items[i] = &p->decrypt_op;
	p->batch_op.items = p->batch_items;
	p->batch_op.n_items = p->batch_items ? p->batch : 0;
	p->batch_decrypt.op_case = KMS__REQUEST__OP_BATCH_DECRYPT;
	p->batch_decrypt.batch_decrypt = &p->batch_op;
}

/* echo: an Encrypt request packed once, with a fixed id (and signed once
 * when cfg names a credentials file, so it is as long as a signed one). */
static int make_echo(bench_plan *p, const char *credentials)
{
	static const char echo_key[] = "k-00000000000000000000000000000000";
	snprintf(p->key, sizeof p->key, "%s", echo_key);
	build_requests(p);
	Kms__Request req = p->encrypt;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "kms-bench-echo";
	Kms__Credential cred;
	uint8_t mac[KMS_SIGN_MAC_LEN];
	kms_credentials creds = { 0 };
	const char *path = credentials;
	if (path) {
		kms_error err;
		if (kms_credentials_load(path, &creds, &err) != KMS_OK) {
			fprintf(stderr, "%s: %s\n", BENCH_PROG, err.message);
			return CLI_EXIT_USAGE;
		}
		int64_t now = (int64_t)time(NULL);
		kms_status st = kms_sign_request_mac(&req, creds.secret, now, mac);
		if (st != KMS_OK) {
			kms_credentials_free(&creds);
			fprintf(stderr, "%s: cannot sign the echo request (%s)\n", BENCH_PROG,
			        kms_status_name(st));
			return CLI_EXIT_UNREACHABLE;
		}
		kms__credential__init(&cred);
		cred.access_key_id = creds.access_key_id;
		cred.timestamp_unix = now;
		cred.mac.data = mac;
		cred.mac.len = sizeof mac;
		req.credential = &cred;
	}
	p->echo_len = kms__request__get_packed_size(&req);
	p->echo = malloc(p->echo_len);
	if (p->echo)
		kms__request__pack(&req, p->echo);
	kms_credentials_free(&creds);
	kms_wipe(mac, sizeof mac);
	if (!p->echo) {
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

static bench_plan *plan_alloc(const bench_config *cfg)
{
	bench_plan *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->op = cfg->op;
	p->batch = cfg->batch;
	p->plaintext_len = cfg->plaintext_bytes;
	p->plaintext = kms_secure_alloc(p->plaintext_len);
	if (p->plaintext)
		for (size_t i = 0; i < p->plaintext_len; i++)
			p->plaintext[i] = (uint8_t)('a' + i % 26);
	if (cfg->op == BENCH_OP_BATCH_DECRYPT)
		p->batch_items = calloc(cfg->batch, sizeof *p->batch_items);
	if (!p->plaintext || (cfg->op == BENCH_OP_BATCH_DECRYPT && !p->batch_items)) {
		kms_secure_free(p->plaintext);
		free(p->batch_items);
		free(p);
		return NULL;
	}
	return p;
}

int bench_plan_make(const bench_config *cfg, kms_client *client, const char *credentials,
                    bench_plan **out)
{
	int code = CLI_EXIT_OK;
	*out = NULL;
	bench_plan *p = plan_alloc(cfg);
	if (!p) {
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		return CLI_EXIT_UNREACHABLE;
	}
	if (cfg->op == BENCH_OP_ECHO) {
		code = make_echo(p, credentials);
		goto out;
	}
	if (cfg->key)
		snprintf(p->key, sizeof p->key, "%s", cfg->key);
	else if (needs_key(cfg->op) && (code = make_key(p, client)) != CLI_EXIT_OK)
		goto out;
	if (needs_blob(cfg->op) && (code = make_blob(p, client)) != CLI_EXIT_OK)
		goto out;
	build_requests(p);
out:
	if (code != CLI_EXIT_OK) {
		bench_plan_free(p, client);
		return code;
	}
	*out = p;
	return CLI_EXIT_OK;
}

void bench_plan_free(bench_plan *p, kms_client *client)
{
	if (!p)
		return;
	if (p->key_made && client) {
		kms_error err;
		if (kms_schedule_key_deletion(client, p->key, 7, NULL, NULL, &err) != KMS_OK)
			fprintf(stderr, "%s: warning: the run's key %s is left as it is: %s\n",
			        BENCH_PROG, p->key, err.message);
	}
	kms_secure_free(p->plaintext);
	free(p->blob);
	free(p->batch_items);
	free(p->echo);
	free(p);
}

/* ---- the run ---- */

static bench_op op_of(const bench_plan *p, uint64_t seq)
{
	return p->op == BENCH_OP_MIXED ? mixed_cycle[seq % MIXED_CYCLE] : p->op;
}

kms_status bench_plan_start(const bench_plan *p, kms_client *client, uint64_t seq,
                            kms_async_done done, void *arg, kms_error *err)
{
	switch (op_of(p, seq)) {
	case BENCH_OP_ENCRYPT:
		return kms_client_call_async(client, &p->encrypt, done, arg, err);
	case BENCH_OP_DECRYPT:
		return kms_client_call_async(client, &p->decrypt, done, arg, err);
	case BENCH_OP_GENERATE_DATA_KEY:
		return kms_client_call_async(client, &p->data_key, done, arg, err);
	case BENCH_OP_BATCH_DECRYPT:
		return kms_client_call_async(client, &p->batch_decrypt, done, arg, err);
	case BENCH_OP_ECHO:
		return kms_client_call_bytes_async(client, p->echo, p->echo_len, done, arg, err);
	case BENCH_OP_MIXED:
		break;
	}
	return KMS_INTERNAL;
}

/* A batch is a success when every item is. */
static bool batch_ok(const bench_plan *p, const Kms__Response *resp, kms_status *status,
                     char *why, size_t why_cap)
{
	const Kms__BatchDecryptResponse *b = resp->batch_decrypt;
	if (!b || b->n_results != p->batch) {
		*status = KMS_INTERNAL;
		snprintf(why, why_cap, "batch-decrypt answered %zu results for %u items",
		         b ? b->n_results : 0, p->batch);
		return false;
	}
	for (size_t i = 0; i < b->n_results; i++) {
		if (b->results[i]->status != KMS__STATUS__OK) {
			*status = kms_status_from_wire((int)b->results[i]->status);
			snprintf(why, why_cap, "batch-decrypt item %zu: %s: %.120s", i,
			         kms_status_name(*status),
			         b->results[i]->message ? b->results[i]->message : "");
			return false;
		}
	}
	return true;
}

bool bench_plan_check(const bench_plan *p, const kms_async_result *r, kms_status *status,
                      char *why, size_t why_cap)
{
	if (r->status != KMS_OK) {
		*status = r->status;
		snprintf(why, why_cap, "%s", r->err->message);
		return false;
	}
	if (p->op == BENCH_OP_ECHO) {
		if (r->reply_len == p->echo_len && memcmp(r->reply, p->echo, p->echo_len) == 0)
			return true;
		*status = KMS_INTERNAL;
		snprintf(why, why_cap, "the echo answered %zu bytes that are not the %zu sent",
		         r->reply_len, p->echo_len);
		return false;
	}
	if (p->op == BENCH_OP_BATCH_DECRYPT)
		return batch_ok(p, r->resp, status, why, why_cap);
	return true;
}
