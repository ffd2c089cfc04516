/*
 * tool_random.c: kms data-key and kms random: secrets made by the HSM and
 * handed to the caller. They are printed on the chosen output only, and
 * every copy on the way is in secure memory.
 */
#include "clients/cli/tool.h"

#include <stdlib.h>
#include <string.h>

#include <kms/secmem.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_CONTEXT,
	OPT_NO_PLAINTEXT,
	OPT_OUT,
	OPT_RAW,
};

int tool_data_key(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "no-plaintext", no_argument, NULL, OPT_NO_PLAINTEXT },
		{ "out", required_argument, NULL, OPT_OUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct cli_pairs context = { 0 };
	const char *key_id = NULL, *out = NULL, *why;
	bool no_plaintext = false;
	kms_client *client = NULL;
	kms_data_key dk = { 0 };
	kms_error err;
	char *key_text = NULL, *blob_text = NULL, *lines = NULL;
	int opt, code = CLI_EXIT_OK;

	while (code == CLI_EXIT_OK && (opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY:
			key_id = optarg;
			break;
		case OPT_CONTEXT:
			if ((why = cli_pairs_add(&context, optarg)) != NULL)
				code = cli_usage_error(cli, "--context %s: %s", optarg, why);
			break;
		case OPT_NO_PLAINTEXT:
			no_plaintext = true;
			break;
		case OPT_OUT:
			out = optarg;
			break;
		default:
			code = cli_usage_error(cli, "option not handled");
		}
	}
	if (code != CLI_EXIT_OK ||
	    (code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		goto out;
	if (!key_id) {
		code = cli_usage_error(cli, "--key KEY is required");
		goto out;
	}
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = no_plaintext
		? kms_generate_data_key_without_plaintext(client, key_id, context.pairs,
		                                          context.n, &dk, &err)
		: kms_generate_data_key(client, key_id, context.pairs, context.n, &dk, &err);
	if (st != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	blob_text = kms_base64_encode_secure(dk.blob, dk.blob_len);
	key_text = dk.plaintext ? kms_base64_encode_secure(dk.plaintext, dk.plaintext_len) : NULL;
	if (!blob_text || (dk.plaintext && !key_text)) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	if (cli->json) {
		json_t *j = json_pack("{s:s, s:o, s:I}", "ciphertext_blob", blob_text, "key_id",
		                      cli_json_str(dk.key_id), "key_version",
		                      (json_int_t)dk.key_version);
		if (j && key_text && json_object_set_new(j, "plaintext", json_string(key_text)) != 0) {
			json_decref(j);
			j = NULL;
		}
		code = cli_json_write(cli, out, j);
		goto out;
	}
	/* Plaintext first, then the blob: one base64 line each. */
	size_t key_len = key_text ? strlen(key_text) : 0, blob_len = strlen(blob_text);
	lines = kms_secure_alloc(key_len + blob_len + 2);
	if (!lines) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	size_t used = 0;
	if (key_text) {
		memcpy(lines, key_text, key_len);
		lines[key_len] = '\n';
		used = key_len + 1;
	}
	memcpy(lines + used, blob_text, blob_len);
	lines[used + blob_len] = '\n';
	code = cli_write_output(cli, out, lines, used + blob_len + 1);
out:
	kms_secure_free(lines);
	kms_secure_free(key_text);
	kms_secure_free(blob_text);
	kms_data_key_free(&dk);
	kms_client_close(client);
	cli_pairs_free(&context);
	return code;
}

int tool_random(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "out", required_argument, NULL, OPT_OUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *out = NULL;
	bool raw = false;
	uint32_t n;
	kms_client *client = NULL;
	kms_error err;
	uint8_t *random = NULL;
	char *text = NULL;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_RAW)
			raw = true;
		else if (opt == OPT_OUT)
			out = optarg;
		else
			return cli_usage_error(cli, "option not handled");
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	if (!cli_parse_u32(argv[optind], 1, KMS_GENERATE_RANDOM_MAX, &n))
		return cli_usage_error(cli, "N is 1..%d", KMS_GENERATE_RANDOM_MAX);
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if (kms_generate_random(client, n, &random, &err) != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	if (raw && !cli->json) {
		code = cli_write_output(cli, out, random, n);
		goto out;
	}
	if (!(text = kms_base64_encode_secure(random, n))) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	if (cli->json) {
		code = cli_json_write(cli, out, json_pack("{s:s, s:I}", "random", text, "bytes",
		                                          (json_int_t)n));
		goto out;
	}
	size_t len = strlen(text);
	text[len++] = '\n';
	code = cli_write_output(cli, out, text, len);
out:
	kms_secure_free(text);
	kms_secure_free(random);
	kms_client_close(client);
	return code;
}
