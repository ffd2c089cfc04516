/*
 * tool_crypt.c: kms encrypt, decrypt, re-encrypt. Plaintexts live in
 * secure memory from the moment they are read to the moment they are
 * written, and go nowhere else.
 */
#include "clients/cli/tool.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <kms/secmem.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_CONTEXT,
	OPT_DEST_CONTEXT,
	OPT_IN,
	OPT_OUT,
	OPT_RAW,
	OPT_RAW_IN,
};

/* What the three commands take; each uses a part. */
struct crypt_args {
	const char *key_id;
	struct cli_pairs context;
	struct cli_pairs dest_context;
	const char *in;
	const char *out;
	bool raw;
	bool raw_in;
};

static int parse(struct cli *cli, int argc, char **argv, const struct option *opts,
                 struct crypt_args *a)
{
	const char *why;
	int opt;

	memset(a, 0, sizeof *a);
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY:
			a->key_id = optarg;
			break;
		case OPT_CONTEXT:
			if ((why = cli_pairs_add(&a->context, optarg)) != NULL)
				return cli_usage_error(cli, "--context %s: %s", optarg, why);
			break;
		case OPT_DEST_CONTEXT:
			if ((why = cli_pairs_add(&a->dest_context, optarg)) != NULL)
				return cli_usage_error(cli, "--dest-context %s: %s", optarg, why);
			break;
		case OPT_IN:
			a->in = optarg;
			break;
		case OPT_OUT:
			a->out = optarg;
			break;
		case OPT_RAW:
			a->raw = true;
			break;
		case OPT_RAW_IN:
			a->raw_in = true;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	return cli_getopt_end(cli, opt, argc, argv, 0, 0);
}

static void args_free(struct crypt_args *a)
{
	cli_pairs_free(&a->context);
	cli_pairs_free(&a->dest_context);
}

/* A blob from the input: base64 text (strictly decoded) or raw bytes.
 * *blob is malloc'ed: a blob is not secret. */
static int read_blob(struct cli *cli, const char *path, bool raw_in, uint8_t **blob,
                     size_t *blob_len)
{
	/* Base64 may be wrapped (CRLF every 64 columns or more) and end with a
	 * line end or two. */
	size_t b64 = kms_base64_encoded_len(TOOL_BLOB_MAX);
	size_t cap = raw_in ? TOOL_BLOB_MAX : b64 + b64 / 64 * 2 + 4;
	size_t len, total;
	uint8_t *input = malloc(cap);
	int code;

	*blob = NULL;
	*blob_len = 0;
	if (!input)
		return cli_out_of_memory(cli);
	if ((code = cli_read_input(cli, path, input, cap, &len, &total)) != CLI_EXIT_OK)
		goto fail;
	if (total > cap || len == 0) {
		code = cli_usage_error(cli, "input is %zu bytes; a ciphertext blob%s is 1..%zu",
		                       total, raw_in ? "" : " in base64", cap);
		goto fail;
	}
	if (raw_in) {
		*blob = input;
		*blob_len = len;
		return CLI_EXIT_OK;
	}
	uint8_t *decoded = malloc(len / 4 * 3 + 3);
	if (!decoded) {
		code = cli_out_of_memory(cli);
		goto fail;
	}
	if (!cli_b64_decode((const char *)input, len, decoded, len / 4 * 3 + 3, blob_len)) {
		free(decoded);
		code = cli_usage_error(cli, "input is not base64 (one blob; use --raw-in "
		                       "for raw bytes)");
		goto fail;
	}
	free(input);
	*blob = decoded;
	return CLI_EXIT_OK;
fail:
	free(input);
	return code;
}

/* Writes a blob: raw, base64 and a newline, or JSON with its key. */
static int write_blob(struct cli *cli, const struct crypt_args *a, const kms_ciphertext *ct,
                      const char *source_key_id, uint32_t source_key_version)
{
	if (a->raw)
		return cli_write_output(cli, a->out, ct->blob, ct->blob_len);
	size_t text_cap = kms_base64_encoded_len(ct->blob_len) + 2;
	char *text = malloc(text_cap);
	int code;
	if (!text || !kms_base64_encode(ct->blob, ct->blob_len, text, text_cap)) {
		free(text);
		return cli_out_of_memory(cli);
	}
	if (cli->json) {
		json_t *j = json_pack("{s:s, s:o, s:I}", "ciphertext_blob", text, "key_id",
		                      cli_json_str(ct->key_id), "key_version",
		                      (json_int_t)ct->key_version);
		if (j && source_key_id &&
		    (json_object_set_new(j, "source_key_id", cli_json_str(source_key_id)) != 0 ||
		     json_object_set_new(j, "source_key_version",
		                         json_integer(source_key_version)) != 0)) {
			json_decref(j);
			j = NULL;
		}
		free(text);
		return cli_json_write(cli, a->out, j);
	}
	size_t n = strlen(text);
	text[n++] = '\n';
	code = cli_write_output(cli, a->out, text, n);
	free(text);
	return code;
}

int tool_encrypt(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "in", required_argument, NULL, OPT_IN },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "raw", no_argument, NULL, OPT_RAW },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct crypt_args a;
	kms_client *client = NULL;
	kms_ciphertext ct = { 0 };
	kms_error err;
	size_t len = 0, total;
	uint8_t *plaintext = NULL;
	int code = parse(cli, argc, argv, opts, &a);

	if (code != CLI_PROCEED)
		goto out;
	if (!a.key_id) {
		code = cli_usage_error(cli, "--key KEY is required");
		goto out;
	}
	plaintext = kms_secure_alloc(TOOL_ENCRYPT_MAX);
	if (!plaintext) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	if ((code = cli_read_input(cli, a.in, plaintext, TOOL_ENCRYPT_MAX, &len, &total)) !=
	    CLI_EXIT_OK)
		goto out;
	if (total > TOOL_ENCRYPT_MAX) {
		fprintf(cli->err, "%s: input is %zu bytes; kms encrypt takes at most %d "
		        "(envelope encryption of files comes later)\n", cli->prog, total,
		        TOOL_ENCRYPT_MAX);
		code = CLI_EXIT_USAGE;
		goto out;
	}
	if (len == 0) {
		fprintf(cli->err, "%s: input is empty; kms encrypt takes 1..%d bytes\n",
		        cli->prog, TOOL_ENCRYPT_MAX);
		code = CLI_EXIT_USAGE;
		goto out;
	}
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = kms_encrypt(client, a.key_id, plaintext, len, a.context.pairs,
	                            a.context.n, &ct, &err);
	kms_secure_free(plaintext); /* wiped: its last use was the request */
	plaintext = NULL;
	if (st != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	code = write_blob(cli, &a, &ct, NULL, 0);
out:
	kms_secure_free(plaintext);
	kms_ciphertext_free(&ct);
	kms_client_close(client);
	args_free(&a);
	return code;
}

int tool_decrypt(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "in", required_argument, NULL, OPT_IN },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "raw-in", no_argument, NULL, OPT_RAW_IN },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct crypt_args a;
	kms_client *client = NULL;
	kms_plaintext pt = { 0 };
	kms_error err;
	uint8_t *blob = NULL;
	size_t blob_len;
	char *text = NULL;
	int code = parse(cli, argc, argv, opts, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = read_blob(cli, a.in, a.raw_in, &blob, &blob_len)) != CLI_EXIT_OK)
		goto out;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if (kms_decrypt(client, blob, blob_len, a.context.pairs, a.context.n, a.key_id, &pt,
	                &err) != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	if (!cli->json) {
		code = cli_write_output(cli, a.out, pt.bytes, pt.len);
		goto out;
	}
	/* JSON carries the plaintext in base64; both copies are wiped (jansson's
	 * through the wiping allocator kms installs). */
	if (!(text = kms_base64_encode_secure(pt.bytes, pt.len))) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	code = cli_json_write(cli, a.out,
	                      json_pack("{s:s, s:o, s:I}", "plaintext", text, "key_id",
	                                cli_json_str(pt.key_id), "key_version",
	                                (json_int_t)pt.key_version));
out:
	kms_secure_free(text);
	kms_plaintext_free(&pt);
	free(blob);
	kms_client_close(client);
	args_free(&a);
	return code;
}

int tool_re_encrypt(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "dest-context", required_argument, NULL, OPT_DEST_CONTEXT },
		{ "in", required_argument, NULL, OPT_IN },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "raw-in", no_argument, NULL, OPT_RAW_IN },
		{ "raw", no_argument, NULL, OPT_RAW },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct crypt_args a;
	kms_client *client = NULL;
	kms_reencrypted re = { 0 };
	kms_error err;
	uint8_t *blob = NULL;
	size_t blob_len;
	int code = parse(cli, argc, argv, opts, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = read_blob(cli, a.in, a.raw_in, &blob, &blob_len)) != CLI_EXIT_OK)
		goto out;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if (kms_re_encrypt(client, blob, blob_len, a.context.pairs, a.context.n, a.key_id,
	                   a.dest_context.pairs, a.dest_context.n, &re, &err) != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	code = write_blob(cli, &a, &re.ciphertext, re.source_key_id, re.source_key_version);
out:
	kms_reencrypted_free(&re);
	free(blob);
	kms_client_close(client);
	args_free(&a);
	return code;
}
