/*
 * tool_crypt.c: kms encrypt, decrypt, re-encrypt.
 *
 * Two forms of ciphertext: a kms blob (Encrypt: at most 4096 bytes, sealed
 * inside kmsd) and an envelope message (<kms/envelope.h>: any size, sealed
 * here under a data key from kmsd). encrypt picks one (--mode); decrypt
 * tells them apart by the envelope's magic. Envelope messages stream: 1 MiB
 * reads, 1 MiB writes, memory that does not grow with the file.
 *
 * Plaintexts live in secure memory from the moment they are read to the
 * moment they are written, and go nowhere else.
 */
#include "clients/cli/tool.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kms/envelope.h>
#include <kms/secmem.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_CONTEXT,
	OPT_DEST_CONTEXT,
	OPT_RAW,
	OPT_RAW_IN,
	OPT_MODE,
	OPT_QUIET,
	OPT_ANY_CONTEXT,
	/* A letter is also the option's short form (cli_getopt): -i, -o. */
	OPT_IN = 'i',
	OPT_OUT = 'o',
};

enum crypt_mode { MODE_AUTO, MODE_DIRECT, MODE_ENVELOPE };

/* What the three commands take; each uses a part. */
struct crypt_args {
	const char *key_id;
	struct cli_pairs context;
	struct cli_pairs dest_context;
	const char *in;
	const char *out;
	bool raw;
	bool raw_in;
	enum crypt_mode mode;
	bool quiet;
	bool any_context;
};

/* The input a blob can take: raw, or base64, which may be wrapped (CRLF
 * every 64 columns or more) and end with a line end or two. */
static size_t blob_input_max(bool raw_in)
{
	size_t b64 = kms_base64_encoded_len(TOOL_BLOB_MAX);
	return raw_in ? TOOL_BLOB_MAX : b64 + b64 / 64 * 2 + 4;
}

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
		case OPT_MODE:
			if (strcmp(optarg, "auto") == 0)
				a->mode = MODE_AUTO;
			else if (strcmp(optarg, "direct") == 0)
				a->mode = MODE_DIRECT;
			else if (strcmp(optarg, "envelope") == 0)
				a->mode = MODE_ENVELOPE;
			else
				return cli_usage_error(cli, "--mode takes auto, direct or envelope");
			break;
		case OPT_ANY_CONTEXT:
			a->any_context = true;
			break;
		case OPT_QUIET:
			a->quiet = true;
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

static bool is_stdio(const char *path)
{
	return !path || strcmp(path, "-") == 0;
}

/* A blob from input[0..len): base64 text (strictly decoded) or raw bytes.
 * *blob is malloc'ed: a blob is not secret. */
static int decode_blob(struct cli *cli, bool raw_in, const uint8_t *input, size_t len,
                       bool after_envelope_check, uint8_t **blob, size_t *blob_len)
{
	*blob = NULL;
	*blob_len = 0;
	if (raw_in) {
		if (!(*blob = malloc(len)))
			return cli_out_of_memory(cli);
		memcpy(*blob, input, len);
		*blob_len = len;
		return CLI_EXIT_OK;
	}
	uint8_t *decoded = malloc(len / 4 * 3 + 3);
	if (!decoded)
		return cli_out_of_memory(cli);
	if (!cli_b64_decode((const char *)input, len, decoded, len / 4 * 3 + 3, blob_len)) {
		free(decoded);
		if (after_envelope_check)
			return cli_usage_error(cli, "input is not an envelope message and not base64 "
			                       "(a raw ciphertext blob needs --raw-in)");
		return cli_usage_error(cli, "input is not base64 (one blob; use --raw-in "
		                       "for raw bytes)");
	}
	*blob = decoded;
	return CLI_EXIT_OK;
}

/* A blob from the input (re-encrypt). */
static int read_blob(struct cli *cli, const char *path, bool raw_in, uint8_t **blob,
                     size_t *blob_len)
{
	size_t cap = blob_input_max(raw_in);
	size_t len, total;
	uint8_t *input = malloc(cap);
	int code;

	*blob = NULL;
	*blob_len = 0;
	if (!input)
		return cli_out_of_memory(cli);
	if ((code = cli_read_input(cli, path, input, cap, &len, &total)) != CLI_EXIT_OK)
		goto out;
	if (kms_envelope_is_message(input, len)) {
		code = cli_usage_error(cli, "input is an envelope message, and only a ciphertext "
		                       "blob (kms encrypt --mode direct) can be re-encrypted: decrypt "
		                       "it and encrypt it again");
		goto out;
	}
	if (total > cap || len == 0) {
		code = cli_usage_error(cli, "input is %zu bytes; a ciphertext blob%s is 1..%zu",
		                       total, raw_in ? "" : " in base64", cap);
		goto out;
	}
	code = decode_blob(cli, raw_in, input, len, false, blob, blob_len);
out:
	free(input);
	return code;
}

const char *tool_key_state_hint(const kms_error *err)
{
	if (err->origin != KMS_ERROR_SERVER || err->status != KMS_FAILED_PRECONDITION)
		return NULL;
	if (strstr(err->message, "DISABLED"))
		return "; an admin can enable it (kms-admin key enable KEY)";
	if (strstr(err->message, "PENDING_DELETION"))
		return "; an admin can cancel its deletion (kms-admin key cancel-deletion KEY)";
	return NULL;
}

/* kmsd's denials on a key that requires consent (docs/consent.md): no
 * grant changes them, so the grant hint would mislead. */
static const char *consent_hint(const kms_error *err)
{
	if (!strncmp(err->message, "consent ", 8))
		return "; a grant does not change this: only an active consent of this person for "
		       "this purpose does (kms-admin consent list --dp PSEUDONYM)";
	if (strstr(err->message, "requires consent"))
		return "; give each with --context k=v";
	return NULL;
}

/* What to do about a failure, after its message on the same line. kmsd's
 * message already names the key and the reason. */
static const char *hint_for(const kms_error *err, bool envelope_encrypt)
{
	const char *consent = err->origin == KMS_ERROR_SERVER && err->status == KMS_ACCESS_DENIED
	                              ? consent_hint(err)
	                              : NULL;
	if (consent)
		return consent;
	if (err->origin == KMS_ERROR_SERVER && err->status == KMS_ACCESS_DENIED)
		return envelope_encrypt
		               ? "; envelope encryption asks kmsd for a data key, so the grant must "
		                 "allow generate_data_key (or use --mode direct for at most "
		                 CLI_STR(TOOL_ENCRYPT_MAX) " bytes)"
		               : "; ask an admin for a grant on the key (kms-admin grant create)";
	const char *state = tool_key_state_hint(err);
	if (state)
		return state;
	if (err->origin == KMS_ERROR_LOCAL && err->status == KMS_INVALID_ARGUMENT &&
	    strstr(err->message, "not the one required"))
		return " with --context k=v (or --any-context to take whatever it holds)";
	if (err->origin == KMS_ERROR_LOCAL && err->status == KMS_INVALID_CIPHERTEXT &&
	    !strstr(err->message, "upgrade kms"))
		return "; this copy cannot be decrypted: use an intact one";
	return NULL;
}

/* The output of a command that failed: removed when it is a file; when
 * bytes already went where they cannot be taken back (standard output, a
 * pipe), says how many, and that they are not to be used. */
static void drop_output(struct cli *cli, struct cli_sink *sink, bool encrypting)
{
	uint64_t gone = cli_sink_abort(sink);
	if (gone > 0)
		fprintf(cli->err, "%s: the %" PRIu64 " bytes already written to %s are %s and must "
		        "be discarded\n", cli->prog, gone, cli_sink_name(sink),
		        encrypting ? "an incomplete message" : "invalid plaintext");
}

/* An envelope call failed: clears the progress line, says why (a failed
 * write as the output's own error, else the library's or kmsd's words),
 * drops the output, and says what had already gone out and must not be
 * used. */
static int envelope_fail(struct cli *cli, const kms_error *err, struct cli_progress *progress,
                         struct cli_sink *sink, bool envelope_encrypt)
{
	int code;
	cli_progress_end(progress);
	if (sink->error) {
		fprintf(cli->err, "%s: cannot write %s: %s\n", cli->prog, cli_sink_name(sink),
		        strerror(sink->error));
		code = CLI_EXIT_USAGE;
	} else {
		code = cli_report_hint(cli, err, hint_for(err, envelope_encrypt));
	}
	drop_output(cli, sink, envelope_encrypt);
	return code;
}

/* A JSON summary of an envelope message, for --json (the message itself
 * went to the file). */
static int envelope_json(struct cli *cli, const char *key_id, uint32_t key_version,
                         uint64_t plaintext_bytes, const uint64_t *message_bytes)
{
	json_t *j = json_pack("{s:s, s:o, s:I, s:I}", "format", "envelope", "key_id",
	                      cli_json_str(key_id), "key_version", (json_int_t)key_version,
	                      "plaintext_bytes", (json_int_t)plaintext_bytes);
	if (j && message_bytes &&
	    json_object_set_new(j, "message_bytes", json_integer((json_int_t)*message_bytes)) != 0) {
		json_decref(j);
		j = NULL;
	}
	return cli_json_print(cli, j);
}

/* Where an envelope message or its plaintext may go, checked before
 * anything is asked of kmsd. */
static int envelope_target_check(struct cli *cli, const struct crypt_args *a, bool binary)
{
	if (cli->json && is_stdio(a->out))
		return cli_usage_error(cli, "--json with an envelope message needs -o FILE (the "
		                       "output is not JSON; the summary is)");
	if (binary && is_stdio(a->out) && isatty(fileno(cli->out))) {
		fprintf(cli->err, "%s: refusing to write a binary envelope message to a terminal: "
		        "give -o FILE or redirect standard output\n", cli->path);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
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

static int encrypt_direct(struct cli *cli, const struct crypt_args *a, uint8_t *plaintext,
                          size_t len)
{
	kms_client *client = NULL;
	kms_ciphertext ct = { 0 };
	kms_error err;
	int code = cli_connect(cli, &client);

	if (code == CLI_EXIT_OK) {
		kms_status st = kms_encrypt(client, a->key_id, plaintext, len, a->context.pairs,
		                            a->context.n, &ct, &err);
		kms_wipe(plaintext, len); /* its last use was the request */
		if (st != KMS_OK)
			code = cli_report_hint(cli, &err, hint_for(&err, false));
		else
			code = write_blob(cli, a, &ct, NULL, 0);
	}
	kms_ciphertext_free(&ct);
	kms_client_close(client);
	return code;
}

/* Seals the input as an envelope message: first the got bytes already in
 * buf (CLI_IO_BUF of secure memory), then the rest, a buffer at a time. */
static int encrypt_envelope(struct cli *cli, const struct crypt_args *a, struct cli_input *in,
                            uint8_t *buf, size_t got)
{
	kms_client *client = NULL;
	kms_envelope_encryptor *enc = NULL;
	struct cli_sink sink = { 0 };
	struct cli_progress progress = { 0 };
	kms_error err;
	uint64_t fed = 0;
	bool grew = false;
	int code, r;

	if ((code = envelope_target_check(cli, a, true)) != CLI_EXIT_OK)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if ((code = cli_sink_open(cli, a->out, false, &sink)) != CLI_EXIT_OK)
		goto out;
	/* A file's size lets the library check that the message holds all of
	 * it, and no more. */
	kms_envelope_encrypt_options opts = { .size_known = in->size_known, .size = in->size };
	if (kms_envelope_encrypt_init(client, a->key_id, a->context.pairs, a->context.n, &opts,
	                              cli_sink_write, &sink, &enc, &err) != KMS_OK) {
		code = envelope_fail(cli, &err, &progress, &sink, true);
		goto out;
	}
	cli_progress_start(cli, &progress, !a->quiet && in->size_known, in->size);
	for (;;) {
		if (in->size_known && got > in->size - fed) {
			grew = true; /* said below */
			break;
		}
		if (kms_envelope_encrypt_update(enc, buf, got, &err) != KMS_OK) {
			code = envelope_fail(cli, &err, &progress, &sink, true);
			goto out;
		}
		fed += got;
		cli_progress_add(&progress, got);
		if (in->eof)
			break;
		if ((r = cli_input_read(in, buf, CLI_IO_BUF, &got)) != 0) {
			cli_progress_end(&progress);
			code = cli_input_error(cli, in, r);
			goto out;
		}
	}
	kms_wipe(buf, CLI_IO_BUF);
	if (in->size_known && (grew || fed != in->size || !in->eof)) {
		/* The message would not be the file as it is now, or as it was. */
		cli_progress_end(&progress);
		fprintf(cli->err, "%s: %s changed size while it was read (it was %" PRIu64 " bytes):"
		        " encrypt it when nothing is writing to it\n", cli->prog, in->name, in->size);
		code = CLI_EXIT_USAGE;
		goto out;
	}
	if (kms_envelope_encrypt_final(enc, &err) != KMS_OK) {
		code = envelope_fail(cli, &err, &progress, &sink, true);
		goto out;
	}
	cli_progress_end(&progress);
	uint64_t message_bytes = sink.written + sink.fill;
	if ((code = cli_sink_commit(&sink)) != CLI_EXIT_OK)
		goto out;
	if (cli->json)
		code = envelope_json(cli, kms_envelope_encryptor_key_id(enc),
		                     kms_envelope_encryptor_key_version(enc), fed, &message_bytes);
out:
	cli_progress_end(&progress);
	if (code != CLI_EXIT_OK)
		drop_output(cli, &sink, true);
	cli_sink_abort(&sink);
	kms_envelope_encryptor_free(enc);
	kms_client_close(client);
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
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct crypt_args a;
	struct cli_input in = { .fd = -1 };
	size_t got = 0;
	uint8_t *buf = NULL;
	int r, code = parse(cli, argc, argv, opts, &a);

	if (code != CLI_PROCEED)
		goto out;
	if (!a.key_id) {
		code = cli_usage_error(cli, "--key KEY is required");
		goto out;
	}
	if ((code = cli_input_open(cli, a.in, &in)) != CLI_EXIT_OK)
		goto out;
	buf = kms_secure_alloc(CLI_IO_BUF);
	if (!buf) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	/* One byte past what Encrypt takes says whether the input fits it (a
	 * pipe has no size to ask). */
	if ((r = cli_input_read(&in, buf, TOOL_ENCRYPT_MAX + 1, &got)) != 0) {
		code = cli_input_error(cli, &in, r);
		goto out;
	}
	bool fits = in.eof && got >= 1 && got <= TOOL_ENCRYPT_MAX;
	enum crypt_mode mode = a.mode;
	if (mode == MODE_AUTO)
		mode = fits ? MODE_DIRECT : MODE_ENVELOPE;
	if (mode == MODE_DIRECT && got == 0) {
		fprintf(cli->err, "%s: input is empty; --mode direct takes 1..%d bytes (the "
		        "default, --mode auto, seals it as an envelope message)\n", cli->prog,
		        TOOL_ENCRYPT_MAX);
		code = CLI_EXIT_USAGE;
	} else if (mode == MODE_DIRECT && !fits) {
		char size[48];
		if (in.size_known)
			snprintf(size, sizeof size, "%" PRIu64 " bytes", in.size);
		else
			snprintf(size, sizeof size, "more than %d bytes", TOOL_ENCRYPT_MAX);
		fprintf(cli->err, "%s: input is %s; --mode direct takes at most %d: use --mode "
		        "envelope (or leave --mode out)\n", cli->prog, size, TOOL_ENCRYPT_MAX);
		code = CLI_EXIT_USAGE;
	} else if (mode == MODE_DIRECT) {
		code = encrypt_direct(cli, &a, buf, got);
	} else {
		code = encrypt_envelope(cli, &a, &in, buf, got);
	}
out:
	kms_secure_free(buf); /* wiped */
	cli_input_close(&in);
	args_free(&a);
	return code;
}

static int decrypt_blob(struct cli *cli, const struct crypt_args *a, const uint8_t *input,
                        size_t len)
{
	kms_client *client = NULL;
	kms_plaintext pt = { 0 };
	kms_error err;
	uint8_t *blob = NULL;
	size_t blob_len;
	char *text = NULL;
	int code;

	if ((code = decode_blob(cli, a->raw_in, input, len, true, &blob, &blob_len)) != CLI_EXIT_OK)
		goto out;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if (kms_decrypt(client, blob, blob_len, a->context.pairs, a->context.n, a->key_id, &pt,
	                &err) != KMS_OK) {
		code = cli_report_hint(cli, &err, hint_for(&err, false));
		goto out;
	}
	if (!cli->json) {
		code = cli_write_output(cli, a->out, pt.bytes, pt.len);
		goto out;
	}
	/* JSON carries the plaintext in base64; both copies are wiped (jansson's
	 * through the wiping allocator kms installs). */
	if (!(text = kms_base64_encode_secure(pt.bytes, pt.len))) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	code = cli_json_write(cli, a->out,
	                      json_pack("{s:s, s:o, s:I}", "plaintext", text, "key_id",
	                                cli_json_str(pt.key_id), "key_version",
	                                (json_int_t)pt.key_version));
out:
	kms_secure_free(text);
	kms_plaintext_free(&pt);
	free(blob);
	kms_client_close(client);
	return code;
}

/* Opens an envelope message whose first head_len bytes were read already:
 * its plaintext goes out as each segment verifies. */
static int decrypt_envelope(struct cli *cli, const struct crypt_args *a, struct cli_input *in,
                            const uint8_t *head, size_t head_len)
{
	kms_client *client = NULL;
	kms_envelope_decryptor *dec = NULL;
	struct cli_sink sink = { 0 };
	struct cli_progress progress = { 0 };
	kms_error err;
	uint8_t *buf = NULL; /* the message: not secret */
	size_t got;
	int code, r;

	if ((code = envelope_target_check(cli, a, false)) != CLI_EXIT_OK)
		return code;
	if (!(buf = malloc(CLI_IO_BUF)))
		return cli_out_of_memory(cli);
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if ((code = cli_sink_open(cli, a->out, true, &sink)) != CLI_EXIT_OK)
		goto out;
	/* The message's context must be exactly --context (none given: the
	 * empty context), as for a blob: checked before kmsd is asked for
	 * anything, so a message moved from another tenant's or purpose's
	 * path is refused. --any-context takes whatever it holds. */
	kms_envelope_decrypt_options opts = {
		.key_id = a->key_id,
		.require_context = !a->any_context,
		.context = a->context.pairs,
		.n_context = a->context.n,
		.size_known = in->size_known,
		.size = in->size,
	};
	if (kms_envelope_decrypt_init(client, &opts, cli_sink_write, &sink, &dec, &err) !=
	    KMS_OK) {
		code = envelope_fail(cli, &err, &progress, &sink, false);
		goto out;
	}
	cli_progress_start(cli, &progress, !a->quiet && in->size_known, in->size);
	const uint8_t *next = head;
	got = head_len;
	for (;;) {
		if (kms_envelope_decrypt_update(dec, next, got, &err) != KMS_OK) {
			code = envelope_fail(cli, &err, &progress, &sink, false);
			goto out;
		}
		cli_progress_add(&progress, got);
		if (in->eof)
			break;
		if ((r = cli_input_read(in, buf, CLI_IO_BUF, &got)) != 0) {
			cli_progress_end(&progress);
			code = cli_input_error(cli, in, r);
			goto out;
		}
		next = buf;
	}
	/* Only a verified last segment makes what was written a plaintext. */
	if (kms_envelope_decrypt_final(dec, &err) != KMS_OK) {
		code = envelope_fail(cli, &err, &progress, &sink, false);
		goto out;
	}
	cli_progress_end(&progress);
	uint64_t plaintext_bytes = kms_envelope_decryptor_released(dec);
	if ((code = cli_sink_commit(&sink)) != CLI_EXIT_OK)
		goto out;
	if (cli->json)
		code = envelope_json(cli, kms_envelope_decryptor_key_id(dec),
		                     kms_envelope_decryptor_key_version(dec), plaintext_bytes, NULL);
out:
	cli_progress_end(&progress);
	if (code != CLI_EXIT_OK)
		drop_output(cli, &sink, false);
	cli_sink_abort(&sink);
	kms_envelope_decryptor_free(dec);
	kms_client_close(client);
	free(buf);
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
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "any-context", no_argument, NULL, OPT_ANY_CONTEXT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct crypt_args a;
	struct cli_input in = { .fd = -1 };
	uint8_t *input = NULL;
	size_t got = 0, more = 0;
	int r, code = parse(cli, argc, argv, opts, &a);

	if (code != CLI_PROCEED)
		goto out;
	if (a.any_context && a.context.n > 0) {
		code = cli_usage_error(cli, "--any-context and --context: give one or the other");
		goto out;
	}
	if ((code = cli_input_open(cli, a.in, &in)) != CLI_EXIT_OK)
		goto out;
	/* Room for the largest blob and one byte more, to see that it is too
	 * large; the first bytes say which form it is. */
	size_t cap = blob_input_max(a.raw_in);
	if (!(input = malloc(cap + 1))) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if ((r = cli_input_read(&in, input, KMS_ENVELOPE_MAGIC_LEN, &got)) != 0) {
		code = cli_input_error(cli, &in, r);
		goto out;
	}
	if (kms_envelope_is_message(input, got)) {
		code = decrypt_envelope(cli, &a, &in, input, got);
		goto out;
	}
	if ((r = cli_input_read(&in, input + got, cap + 1 - got, &more)) != 0) {
		code = cli_input_error(cli, &in, r);
		goto out;
	}
	got += more;
	if (got == 0) {
		code = cli_usage_error(cli, "input is empty: neither a ciphertext blob nor an "
		                       "envelope message");
	} else if (got > cap) {
		char size[48];
		if (in.size_known)
			snprintf(size, sizeof size, "%" PRIu64 " bytes", in.size);
		else
			snprintf(size, sizeof size, "more than %zu bytes", cap);
		code = cli_usage_error(cli, "input is not an envelope message, and at %s too "
		                       "large for a ciphertext blob%s (1..%zu)", size,
		                       a.raw_in ? "" : " in base64", cap);
	} else {
		code = decrypt_blob(cli, &a, input, got);
	}
out:
	free(input);
	cli_input_close(&in);
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
		code = cli_report_hint(cli, &err, hint_for(&err, false));
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
