/*
 * bench_ops.c: what kms-bench sends. The requests are built once, before
 * the run (the key, a ciphertext to decrypt, the batch, the message to
 * sign or MAC), and started through libkmsclient's asynchronous calls,
 * which give each one a fresh request id and, with an access key, its
 * signature.
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
	Kms__Request sign;        /* sign-p256, sign-ed25519: the plaintext as message */
	Kms__SignRequest sign_op;
	Kms__Request mac;
	Kms__GenerateMacRequest mac_op;
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
	case BENCH_OP_SIGN_P256: return "sign-p256";
	case BENCH_OP_SIGN_ED25519: return "sign-ed25519";
	case BENCH_OP_GENERATE_MAC: return "generate-mac";
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

bool bench_op_has_message(bench_op op)
{
	return op == BENCH_OP_SIGN_P256 || op == BENCH_OP_SIGN_ED25519 ||
	       op == BENCH_OP_GENERATE_MAC;
}

static bool needs_key(bench_op op)
{
	return op != BENCH_OP_ECHO;
}

/* The spec of the key a run makes for op (0: AES_256). */
static kms_key_spec key_spec_of(bench_op op)
{
	switch (op) {
	case BENCH_OP_SIGN_P256: return KMS_KEY_SPEC_ECC_P256;
	case BENCH_OP_SIGN_ED25519: return KMS_KEY_SPEC_ED25519;
	case BENCH_OP_GENERATE_MAC: return KMS_KEY_SPEC_HMAC_SHA256;
	default: return KMS_KEY_SPEC_UNSPECIFIED;
	}
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
static void grant_self(kms_client *client, const char *key, bench_op op)
{
	static const char *const crypt_ops[] = { "encrypt", "decrypt", "generate_data_key" };
	static const char *const sign_ops[] = { "sign" };
	static const char *const mac_ops[] = { "generate_mac" };
	const char *const *ops = crypt_ops;
	size_t n_ops = sizeof crypt_ops / sizeof crypt_ops[0];
	if (op == BENCH_OP_SIGN_P256 || op == BENCH_OP_SIGN_ED25519) {
		ops = sign_ops;
		n_ops = 1;
	} else if (op == BENCH_OP_GENERATE_MAC) {
		ops = mac_ops;
		n_ops = 1;
	}
	kms_health health;
	kms_error err;
	if (kms_health_check(client, &health, &err) != KMS_OK) {
		fprintf(stderr, "%s: warning: cannot ask kmsd who this is (%s); no grant made\n",
		        BENCH_PROG, err.message);
		return;
	}
	kms_create_grant_params params = {
		.key_id = key, .grantee = health.principal,
		.operations = ops, .n_operations = n_ops,
	};
	if (health.principal && health.principal[0] &&
	    kms_create_grant(client, &params, NULL, &err) != KMS_OK)
		fprintf(stderr, "%s: warning: no grant on %s for %s (%s): requests may be "
		        "refused\n", BENCH_PROG, key, health.principal, err.message);
	kms_health_free(&health);
}

/* The usage and protection are left to kmsd: the spec's own (an Ed25519
 * key is hsm-resident, the others wrapped). */
static int make_key(bench_plan *p, kms_client *client)
{
	kms_create_key_params params = {
		.description = "kms-bench run (deletion scheduled when the run ends)",
		.key_spec = key_spec_of(p->op),
	};
	kms_key_metadata md;
	kms_error err;
	if (kms_create_key(client, &params, &md, &err) != KMS_OK)
		return report("cannot create a key for the run (give --key KEY to use one)",
		              &err);
	snprintf(p->key, sizeof p->key, "%s", md.key_id);
	kms_key_metadata_free(&md);
	p->key_made = true;
	grant_self(client, p->key, p->op);
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

	kms__request__init(&p->sign);
	kms__sign_request__init(&p->sign_op);
	p->sign_op.key_id = p->key;
	p->sign_op.message.data = p->plaintext;
	p->sign_op.message.len = p->plaintext_len;
	p->sign_op.message_type = KMS__MESSAGE_TYPE__MESSAGE_RAW;
	/* Named, so a key of the other signing spec is refused, not used. */
	p->sign_op.signing_algorithm = p->op == BENCH_OP_SIGN_ED25519
	                                       ? KMS__SIGNING_ALGORITHM__SIGNING_ED25519
	                                       : KMS__SIGNING_ALGORITHM__SIGNING_ECDSA_SHA_256;
	p->sign.op_case = KMS__REQUEST__OP_SIGN;
	p->sign.sign = &p->sign_op;

	kms__request__init(&p->mac);
	kms__generate_mac_request__init(&p->mac_op);
	p->mac_op.key_id = p->key;
	p->mac_op.message.data = p->plaintext;
	p->mac_op.message.len = p->plaintext_len;
	p->mac.op_case = KMS__REQUEST__OP_GENERATE_MAC;
	p->mac.generate_mac = &p->mac_op;
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
	case BENCH_OP_SIGN_P256:
	case BENCH_OP_SIGN_ED25519:
		return kms_client_call_async(client, &p->sign, done, arg, err);
	case BENCH_OP_GENERATE_MAC:
		return kms_client_call_async(client, &p->mac, done, arg, err);
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
	const Kms__BatchDecryptResponse *b =
		resp->result_case == KMS__RESPONSE__RESULT_BATCH_DECRYPT ? resp->batch_decrypt : NULL;
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

/* The length a sign or MAC answer's result must have: Ed25519 64 bytes
 * (R || S), HMAC-SHA256 32, an ECDSA DER signature 8..72. */
static void result_bounds(bench_op op, size_t *min, size_t *max)
{
	*min = *max = op == BENCH_OP_SIGN_ED25519 ? 64 : 32;
	if (op == BENCH_OP_SIGN_P256) {
		*min = 8;
		*max = 72;
	}
}

/* The signature or MAC in a Sign or GenerateMac answer; NULL when it has
 * none. */
static const ProtobufCBinaryData *result_of(bench_op op, const Kms__Response *resp)
{
	if (!resp)
		return NULL;
	if (op == BENCH_OP_GENERATE_MAC)
		return resp->result_case == KMS__RESPONSE__RESULT_GENERATE_MAC && resp->generate_mac
		               ? &resp->generate_mac->mac
		               : NULL;
	return resp->result_case == KMS__RESPONSE__RESULT_SIGN && resp->sign
	               ? &resp->sign->signature
	               : NULL;
}

/* A Sign or GenerateMac answer is a success when its result is there, of
 * the length the operation gives. */
static bool signed_ok(const bench_plan *p, const Kms__Response *resp, kms_status *status,
                      char *why, size_t why_cap)
{
	const ProtobufCBinaryData *result = result_of(p->op, resp);
	size_t min, max;
	result_bounds(p->op, &min, &max);
	if (result && result->len >= min && result->len <= max)
		return true;
	*status = KMS_INTERNAL;
	if (result && min == max)
		snprintf(why, why_cap, "%s answered OK with a %zu-byte result, not %zu",
		         bench_op_name(p->op), result->len, min);
	else if (result)
		snprintf(why, why_cap, "%s answered OK with a %zu-byte result, not %zu..%zu",
		         bench_op_name(p->op), result->len, min, max);
	else
		snprintf(why, why_cap, "%s answered OK without its result", bench_op_name(p->op));
	return false;
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
	if (bench_op_has_message(p->op))
		return signed_ok(p, r->resp, status, why, why_cap);
	return true;
}
