/*
 * make_test_log: deterministic audit logs for tests/clients/cli/audit-cli-test,
 * made with the tlog library the way kmsd makes them, and a fake kmsd that
 * serves one (GetCheckpoint, GetInclusionProof, GetConsistencyProof).
 *
 *   make_test_log log DIR [OPTIONS]         write a log directory; prints the
 *                                           verifier key
 *   make_test_log checkpoint [OPTIONS]      print the signed checkpoint of
 *                                           the first -m entries
 *   make_test_log vkey [OPTIONS]            print the verifier key
 *   make_test_log serve URL [OPTIONS]       answer as kmsd until SIGTERM (at
 *                                           most 60 s)
 *
 * OPTIONS: -n SIZE (entries, default 300), -m SIZE (checkpoint size, default
 * -n), -s SEED (entries), -o ORIGIN (also the key name), -k SEED (key), -b I
 * (entry I is not JSON), -l MODE (serve: lie: "proof" flips a byte of every
 * inclusion proof, "root" signs another root), -g MS (serve: one more entry
 * every MS ms).
 *
 * The same options give the same bytes: entries, key and signatures
 * (Ed25519 is deterministic) depend only on them.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <kms/kms.pb-c.h>

#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_tiles.h"

#define NOTE_CAP 4096
#define ENTRY_CAP 1024
#define SERVE_MAX_SECONDS 60
#define RECV_POLL_MS 50

static void die(const char *what)
{
	fprintf(stderr, "make_test_log: %s: %s\n", what, kms_error_message());
	exit(2);
}

#define CHECK(expr)                                                            \
	do {                                                                   \
		if ((expr) != KMS_OK)                                          \
			die(#expr);                                            \
	} while (0)

struct params {
	uint64_t size;
	uint64_t cp_size;
	unsigned seed;
	const char *origin;
	const char *key_seed;
	int64_t bad_entry;
	const char *lie;
	unsigned grow_ms;
};

/* ---- entries ---- */

/* Entry i: a kms-like JSON object of varying length. */
static size_t make_entry(const struct params *p, uint64_t i, char *buf, size_t cap)
{
	static const char *const ops[] = { "Encrypt", "Decrypt", "GenerateDataKey", "CreateKey" };
	if ((int64_t)i == p->bad_entry)
		return (size_t)snprintf(buf, cap, "not json %" PRIu64, i);
	unsigned pad = (unsigned)((i * 7 + p->seed) % 40);
	char padding[64];
	memset(padding, 'x', pad);
	padding[pad] = '\0';
	int n = snprintf(buf, cap,
	                 "{\"time\":\"2024-05-01T12:%02u:%02uZ\",\"request_id\":\"r-%u-%06" PRIu64
	                 "\",\"principal\":\"app-%u\",\"source\":\"ipc\",\"operation\":\"%s\","
	                 "\"key_id\":\"k-%04" PRIu64 "\",\"key_version\":1,"
	                 "\"encryption_context\":{\"purpose\":\"test%s\"},\"status\":\"OK\","
	                 "\"error\":\"\",\"latency_us\":%" PRIu64 "}",
	                 (unsigned)(i / 60 % 60), (unsigned)(i % 60), p->seed, i,
	                 (unsigned)(i % 5), ops[i % 4], i % 97, padding, 100 + i * 13 % 900);
	return (size_t)n;
}

static kms_status entry_reader(void *ctx, uint64_t index, uint8_t *buf, size_t cap, size_t *len)
{
	char entry[ENTRY_CAP];
	size_t n = make_entry(ctx, index, entry, sizeof entry);
	KMS_ENSURE(n <= cap, KMS_INTERNAL, "entry too long");
	memcpy(buf, entry, n);
	*len = n;
	return KMS_OK;
}

static void build_tree(const struct params *p, uint64_t size, tlog_tree *tree)
{
	char entry[ENTRY_CAP];
	tlog_tree_init(tree);
	for (uint64_t i = 0; i < size; i++) {
		size_t n = make_entry(p, i, entry, sizeof entry);
		CHECK(tlog_tree_append_entry(tree, (const uint8_t *)entry, n));
	}
}

/* ---- the key ---- */

struct key {
	EVP_PKEY *pkey;
	uint8_t public_key[TLOG_ED25519_PUBLIC_KEY_SIZE];
	char vkey[TLOG_VERIFIER_KEY_MAX];
};

static void key_make(const char *name, const char *seed_text, struct key *key)
{
	uint8_t seed[SHA256_DIGEST_LENGTH];
	size_t len = sizeof key->public_key;
	SHA256((const uint8_t *)seed_text, strlen(seed_text), seed);
	key->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
	if (!key->pkey || EVP_PKEY_get_raw_public_key(key->pkey, key->public_key, &len) != 1)
		die("Ed25519 key");
	CHECK(tlog_verifier_key_format(name, key->public_key, key->vkey));
}

static kms_status key_sign(void *ctx, const uint8_t *msg, size_t len,
                           uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE])
{
	struct key *key = ctx;
	size_t sig_len = TLOG_ED25519_SIGNATURE_SIZE;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1 &&
	          EVP_DigestSign(md, sig, &sig_len, msg, len) == 1;
	EVP_MD_CTX_free(md);
	KMS_ENSURE(ok, KMS_INTERNAL, "EVP_DigestSign failed");
	return KMS_OK;
}

static size_t sign_checkpoint(const struct params *p, struct key *key, uint64_t size,
                              const uint8_t root[static TLOG_HASH_SIZE], char note[NOTE_CAP])
{
	char body[NOTE_CAP];
	size_t body_len, note_len;
	CHECK(tlog_checkpoint_format(p->origin, size, root, NULL, body, sizeof body, &body_len));
	CHECK(tlog_note_sign(body, body_len, p->origin, key->public_key, key_sign, key, note,
	                     NOTE_CAP, &note_len));
	return note_len;
}

/* ---- the fake kmsd ---- */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void fail_response(Kms__Response *resp, char *message)
{
	resp->status = KMS__STATUS__INVALID_ARGUMENT;
	resp->message = message;
}

static void serve(const struct params *p, const char *url)
{
	struct key key;
	tlog_tree tree;
	nng_socket sock;
	char note[NOTE_CAP], entry[ENTRY_CAP], message[128];
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE], signed_root[TLOG_HASH_SIZE];
	ProtobufCBinaryData hashes[TLOG_PROOF_MAX_HASHES];
	uint64_t started = now_ms();

	key_make(p->origin, p->key_seed, &key);
	build_tree(p, p->size, &tree);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (nng_rep0_open(&sock) != 0 || nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, RECV_POLL_MS) ||
	    nng_listen(sock, url, NULL, 0) != 0) {
		fprintf(stderr, "make_test_log: cannot listen on %s\n", url);
		exit(2);
	}
	printf("%s\n", key.vkey);
	fflush(stdout);

	while (!stop && now_ms() - started < SERVE_MAX_SECONDS * 1000) {
		nng_msg *msg;
		if (p->grow_ms) {
			uint64_t want = p->size + (now_ms() - started) / p->grow_ms;
			while (tlog_tree_size(&tree) < want) {
				uint64_t next = tlog_tree_size(&tree);
				size_t n = make_entry(p, next, entry, sizeof entry);
				CHECK(tlog_tree_append_entry(&tree, (const uint8_t *)entry, n));
			}
		}
		if (nng_recvmsg(sock, &msg, 0) != 0)
			continue;
		Kms__Request *req = kms__request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		nng_msg_free(msg);
		if (!req)
			continue;

		Kms__Response resp = KMS__RESPONSE__INIT;
		Kms__GetCheckpointResponse cp = KMS__GET_CHECKPOINT_RESPONSE__INIT;
		Kms__GetInclusionProofResponse ip = KMS__GET_INCLUSION_PROOF_RESPONSE__INIT;
		Kms__GetConsistencyProofResponse cn = KMS__GET_CONSISTENCY_PROOF_RESPONSE__INIT;
		uint64_t size = tlog_tree_size(&tree);
		size_t n = 0;
		resp.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
		resp.request_id = req->request_id;
		resp.status = KMS__STATUS__OK;
		message[0] = '\0';

		switch (req->op_case) {
		case KMS__REQUEST__OP_GET_CHECKPOINT: {
			/* Packed after the switch: lives outside it. */
			CHECK(tlog_tree_root(&tree, size, signed_root));
			if (p->lie && strcmp(p->lie, "root") == 0)
				signed_root[0] ^= 1;
			sign_checkpoint(p, &key, size, signed_root, note);
			cp.checkpoint = note;
			cp.tree_size = size;
			cp.root_hash.data = signed_root;
			cp.root_hash.len = TLOG_HASH_SIZE;
			cp.verifier_key = key.vkey;
			resp.result_case = KMS__RESPONSE__RESULT_GET_CHECKPOINT;
			resp.get_checkpoint = &cp;
			break;
		}
		case KMS__REQUEST__OP_GET_INCLUSION_PROOF: {
			const Kms__GetInclusionProofRequest *r = req->get_inclusion_proof;
			uint64_t ts = r->tree_size ? r->tree_size : size;
			if (ts > size || r->index >= ts) {
				snprintf(message, sizeof message, "audit: no entry %" PRIu64
				         " in a tree of %" PRIu64, r->index, ts);
				fail_response(&resp, message);
				break;
			}
			CHECK(tlog_inclusion_proof(tlog_tree_reader, &tree, ts, r->index, proof,
			                           &n));
			if (p->lie && strcmp(p->lie, "proof") == 0 && n > 0)
				proof[n - 1][5] ^= 0x40;
			size_t len = make_entry(p, r->index, entry, sizeof entry);
			ip.index = r->index;
			ip.tree_size = ts;
			ip.entry.data = (uint8_t *)entry;
			ip.entry.len = len;
			resp.result_case = KMS__RESPONSE__RESULT_GET_INCLUSION_PROOF;
			resp.get_inclusion_proof = &ip;
			break;
		}
		case KMS__REQUEST__OP_GET_CONSISTENCY_PROOF: {
			const Kms__GetConsistencyProofRequest *r = req->get_consistency_proof;
			uint64_t ns = r->new_size ? r->new_size : size;
			if (ns > size || r->old_size > ns) {
				snprintf(message, sizeof message,
				         "audit: no consistency proof from %" PRIu64 " to %" PRIu64,
				         r->old_size, ns);
				fail_response(&resp, message);
				break;
			}
			CHECK(tlog_consistency_proof(tlog_tree_reader, &tree, r->old_size, ns,
			                             proof, &n));
			cn.old_size = r->old_size;
			cn.new_size = ns;
			resp.result_case = KMS__RESPONSE__RESULT_GET_CONSISTENCY_PROOF;
			resp.get_consistency_proof = &cn;
			break;
		}
		default:
			snprintf(message, sizeof message, "the fake kmsd answers audit calls only");
			fail_response(&resp, message);
		}
		for (size_t i = 0; i < n; i++) {
			hashes[i].data = proof[i];
			hashes[i].len = TLOG_HASH_SIZE;
		}
		if (resp.result_case == KMS__RESPONSE__RESULT_GET_INCLUSION_PROOF) {
			ip.hashes = hashes;
			ip.n_hashes = n;
		} else if (resp.result_case == KMS__RESPONSE__RESULT_GET_CONSISTENCY_PROOF) {
			cn.hashes = hashes;
			cn.n_hashes = n;
		}

		nng_msg *reply;
		size_t len = kms__response__get_packed_size(&resp);
		if (nng_msg_alloc(&reply, len) != 0)
			die("nng_msg_alloc");
		kms__response__pack(&resp, nng_msg_body(reply));
		kms__request__free_unpacked(req, NULL);
		if (nng_sendmsg(sock, reply, 0) != 0)
			nng_msg_free(reply);
	}
	nng_close(sock);
	tlog_tree_free(&tree);
	EVP_PKEY_free(key.pkey);
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr, "usage: make_test_log log DIR | checkpoint | vkey | serve URL "
	                "[-n SIZE] [-m SIZE] [-s SEED] [-o ORIGIN] [-k KEYSEED] [-b I] "
	                "[-l proof|root] [-g MS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct params p = { .size = 300, .seed = 1, .origin = "kms.test/audit",
	                    .key_seed = "test-key", .bad_entry = -1 };
	bool cp_size_given = false;
	int opt;
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	optind = 2;
	while ((opt = getopt(argc, argv, "n:m:s:o:k:b:l:g:")) != -1) {
		switch (opt) {
		case 'n':
			p.size = strtoull(optarg, NULL, 10);
			break;
		case 'm':
			p.cp_size = strtoull(optarg, NULL, 10);
			cp_size_given = true;
			break;
		case 's':
			p.seed = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'o':
			p.origin = optarg;
			break;
		case 'k':
			p.key_seed = optarg;
			break;
		case 'b':
			p.bad_entry = strtoll(optarg, NULL, 10);
			break;
		case 'l':
			p.lie = optarg;
			break;
		case 'g':
			p.grow_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (!cp_size_given)
		p.cp_size = p.size;
	const char *arg = optind < argc ? argv[optind] : NULL;

	if (strcmp(cmd, "serve") == 0) {
		if (!arg)
			usage();
		serve(&p, arg);
		return 0;
	}

	struct key key;
	key_make(p.origin, p.key_seed, &key);
	if (strcmp(cmd, "vkey") == 0) {
		printf("%s\n", key.vkey);
	} else if (strcmp(cmd, "checkpoint") == 0) {
		tlog_tree tree;
		uint8_t root[TLOG_HASH_SIZE];
		char note[NOTE_CAP];
		if (p.cp_size > p.size)
			usage();
		build_tree(&p, p.size, &tree);
		CHECK(tlog_tree_root(&tree, p.cp_size, root));
		sign_checkpoint(&p, &key, p.cp_size, root, note);
		fputs(note, stdout);
		tlog_tree_free(&tree);
	} else if (strcmp(cmd, "log") == 0) {
		tlog_tree tree;
		uint8_t root[TLOG_HASH_SIZE];
		char note[NOTE_CAP];
		if (!arg)
			usage();
		build_tree(&p, p.size, &tree);
		CHECK(tlog_bundles_write(arg, entry_reader, &p, 0, p.size));
		CHECK(tlog_tiles_write(arg, tlog_tree_reader, &tree, 0, p.size));
		CHECK(tlog_tree_root(&tree, p.size, root));
		size_t len = sign_checkpoint(&p, &key, p.size, root, note);
		CHECK(tlog_checkpoint_publish(arg, note, len));
		printf("%s\n", key.vkey);
		tlog_tree_free(&tree);
	} else {
		usage();
	}
	EVP_PKEY_free(key.pkey);
	return 0;
}
