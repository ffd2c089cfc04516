/*
 * fuzz_request_replay: runs the request fuzz target without libFuzzer, so
 * every compiler and every ctest lane exercises it.
 *
 *   fuzz_request_replay [FILE|DIR]...
 *   fuzz_request_replay --write-seeds DIR
 *
 * Built-in seeds: one valid packed kms.Request for every operation kmsd
 * serves, made here with protobuf-c from the descriptors (each field gets a
 * well-formed value by its name), and each is checked to validate; every
 * row of the table is checked against kms.proto (ops_check_row). Each
 * seed and each file (a directory: each file in it) is fed whole, then
 * every prefix, every single-byte flip (three masks) and a few appended
 * bytes, by the shared driver tests/support/fuzz_replay.c (which also feeds
 * its own generic seeds). --write-seeds writes
 * the seeds as corpus files instead. Exits non-zero if a file cannot be
 * read, if files were named but none was found, if a seed does not
 * validate or a row does not check; a broken invariant aborts inside the
 * target.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms.pb-c.h>

#include "common/error.h"
#include "kms/pipeline/arena.h"
#include "tests/support/fuzz.h"
#include "tests/kms/pipeline/fuzz_request.h"
#include "kms/pipeline/ops.h"

#define SEED_ARENA (64u << 10)
#define SEED_PAIRS 2
#define SEED_ITEMS 2

/* ---- seeds: a valid request per operation, from the descriptors ---- */

static void *seed_alloc(arena *a, size_t n)
{
	void *p = arena_alloc(a, n);
	if (!p) {
		fprintf(stderr, "fuzz_request_replay: out of memory\n");
		exit(1);
	}
	return p;
}

static const char *seed_string(const char *field)
{
	if (!strcmp(field, "key_id") || !strcmp(field, "target_key_id") ||
	    !strcmp(field, "destination_key_id") || !strcmp(field, "dp_key_id"))
		return "k-00112233445566778899aabbccddeeff";
	if (!strcmp(field, "alias_name") || !strcmp(field, "alias"))
		return "alias/fuzz-seed";
	if (!strcmp(field, "policy"))
		return "{\"Version\":\"2012-10-17\",\"Statement\":[]}";
	if (!strcmp(field, "page_token"))
		return "";
	if (!strcmp(field, "access_key_id"))
		return "AKAAAAAAAAAAAAAAAAAAAA";
	if (!strcmp(field, "grant_id"))
		return "GRAAAAAAAAAAAAAAAAAAAA";
	if (!strcmp(field, "data_principal"))
		return "kp_0000abcd_1_abcdefghijklmnopqrstuvwxyz234567";
	if (!strcmp(field, "purpose"))
		return "101";
	if (!strcmp(field, "key"))
		return "tenant";
	if (!strcmp(field, "status"))
		return "ACTIVE";
	if (!strcmp(field, "value"))
		return "acme \xc3\xa9t\xc3\xa9";
	return "seed";
}

static uint64_t seed_number(const char *field)
{
	if (!strcmp(field, "number_of_bytes"))
		return 32;
	if (!strcmp(field, "pending_window_days"))
		return 7;
	if (!strcmp(field, "rotation_period_days"))
		return 365;
	if (!strcmp(field, "limit"))
		return 10;
	if (!strcmp(field, "index") || !strcmp(field, "old_size"))
		return 1;
	if (!strcmp(field, "tree_size") || !strcmp(field, "new_size"))
		return 2;
	return 1;
}

static ProtobufCMessage *seed_message(arena *a, const ProtobufCMessageDescriptor *d,
                                      unsigned depth);

static void seed_field(arena *a, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                       unsigned depth)
{
	char *member = (char *)m + f->offset;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = f->type == PROTOBUF_C_TYPE_STRING ? 1 :
		           !strcmp(f->name, "items") ? SEED_ITEMS : SEED_PAIRS;
		if (f->type == PROTOBUF_C_TYPE_ENUM) {
			/* One value, the first after UNSPECIFIED (roles: ADMIN). */
			int *values = seed_alloc(a, sizeof *values);
			values[0] = 1;
			*(size_t *)((char *)m + f->quantifier_offset) = 1;
			*(int **)member = values;
			return;
		}
		if (f->type == PROTOBUF_C_TYPE_BYTES) {
			/* Pseudonymize's values: identifiers. */
			static uint8_t value[] = "+919876543210";
			ProtobufCBinaryData *values = seed_alloc(a, n * sizeof *values);
			for (size_t i = 0; i < n; i++)
				values[i] = (ProtobufCBinaryData){ sizeof value - 1, value };
			*(size_t *)((char *)m + f->quantifier_offset) = n;
			*(ProtobufCBinaryData **)member = values;
			return;
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
			return;
		void **items = seed_alloc(a, n * sizeof *items);
		for (size_t i = 0; i < n; i++) {
			if (f->type == PROTOBUF_C_TYPE_STRING) {
				/* A grant's operations are operation names. */
				items[i] = (void *)(!strcmp(f->name, "operations") ? "encrypt"
				                                                    : "environment");
			} else {
				ProtobufCMessage *item = seed_message(a, f->descriptor, depth + 1);
				/* Context keys must differ. */
				if (f->descriptor == &kms__string_pair__descriptor)
					((Kms__StringPair *)item)->key = i ? "app" : "tenant";
				items[i] = item;
			}
		}
		*(size_t *)((char *)m + f->quantifier_offset) = n;
		*(void ***)member = items;
		return;
	}
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		*(const char **)member = seed_string(f->name);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		static uint8_t bytes[] = "attack at dawn";
		static uint8_t mac[32] = "an HMAC-SHA256 is 32 bytes long";
		ProtobufCBinaryData *b = (ProtobufCBinaryData *)member;
		b->data = !strcmp(f->name, "mac") ? mac : bytes;
		b->len = !strcmp(f->name, "mac") ? sizeof mac : sizeof bytes - 1;
		break;
	}
	case PROTOBUF_C_TYPE_UINT32:
		*(uint32_t *)member = (uint32_t)seed_number(f->name);
		break;
	case PROTOBUF_C_TYPE_UINT64:
		*(uint64_t *)member = seed_number(f->name);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		*(int *)member = 1; /* AES_256, ENCRYPT_DECRYPT, ... */
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (depth < 3)
			*(ProtobufCMessage **)member = seed_message(a, f->descriptor, depth + 1);
		break;
	default:
		break;
	}
}

static ProtobufCMessage *seed_message(arena *a, const ProtobufCMessageDescriptor *d,
                                      unsigned depth)
{
	ProtobufCMessage *m = seed_alloc(a, d->sizeof_message);
	d->message_init(m);
	for (unsigned i = 0; i < d->n_fields; i++)
		seed_field(a, m, &d->fields[i], depth);
	return m;
}

/* The packed seed for row i of the operation table (malloc'ed), or NULL
 * past the end. */
static uint8_t *seed_for(arena *a, size_t row, size_t *len)
{
	const op_entry *op = ops_at(row);
	if (!op)
		return NULL;
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field(&kms__request__descriptor,
	                                                (unsigned)op->op);
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE) {
		fprintf(stderr, "fuzz_request_replay: operation %s has no message\n", op->name);
		exit(1);
	}
	Kms__Request req = KMS__REQUEST__INIT;
	char id[64];
	snprintf(id, sizeof id, "seed-%s", op->name);
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = id;
	*(ProtobufCMessage **)((char *)&req + f->offset) = seed_message(a, f->descriptor, 1);
	*(uint32_t *)((char *)&req + f->quantifier_offset) = (uint32_t)op->op;
	*len = kms__request__get_packed_size(&req);
	uint8_t *bytes = malloc(*len ? *len : 1);
	if (!bytes) {
		fprintf(stderr, "fuzz_request_replay: out of memory\n");
		exit(1);
	}
	kms__request__pack(&req, bytes);
	return bytes;
}

static int run_seeds(const char *write_dir)
{
	arena *a = arena_new(SEED_ARENA);
	int rc = 0;
	size_t len;
	uint8_t *bytes;
	if (!a)
		return 1;
	for (size_t row = 0; (bytes = seed_for(a, row, &len)); row++) {
		const char *name = ops_at(row)->name;
		/* The audit and batch columns name proto fields: a wrong name
		 * would silently drop a key or context from the log. */
		if (ops_check_row(ops_at(row)) != KMS_OK) {
			fprintf(stderr, "fuzz_request_replay: %s\n", kms_error_message());
			rc = 1;
		}
		if (write_dir) {
			char path[4096];
			snprintf(path, sizeof path, "%s/seed-%s", write_dir, name);
			FILE *f = fopen(path, "wb");
			if (!f || fwrite(bytes, 1, len, f) != len) {
				fprintf(stderr, "fuzz_request_replay: %s: %s\n", path, strerror(errno));
				rc = 1;
			}
			if (f)
				fclose(f);
		} else {
			fuzz_replay_run(bytes, len);
			if (fuzz_request_last != FUZZ_REQ_VALID) {
				fprintf(stderr, "fuzz_request_replay: the seed for %s does not "
				        "validate (outcome %d)\n", name, (int)fuzz_request_last);
				rc = 1;
			}
			fuzz_replay_mutations(bytes, len);
		}
		free(bytes);
		arena_reset(a);
	}
	arena_free(a);
	return rc;
}

/* fuzz_replay.c's hook: --write-seeds DIR writes the seeds and stops;
 * otherwise every seed is fed (and must validate) before the corpus. */
int fuzz_replay_target_seeds(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-seeds"))
		return run_seeds(argv[2]);
	return run_seeds(NULL) ? 1 : -1;
}
