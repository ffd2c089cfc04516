/*
 * tool_sign.c: kms sign, verify, public-key, mac, verify-mac, pseudonym.
 *
 * Messages (at most KMS_SIGN_MESSAGE_MAX bytes) and the values given to
 * pseudonym are read into secure memory and wiped after their request:
 * they may be identifiers worth hiding, which is what a pseudonym is for.
 * What comes back (a signature, a MAC, a public key, pseudonyms) is not
 * secret. A signature or MAC is written as raw bytes (--base64: base64),
 * never raw to a terminal.
 *
 * verify and verify-mac exit CLI_EXIT_INVALID (4) when kmsd answers that
 * the signature or MAC does not verify, so a script tells "no" apart from
 * an error (1, 2, 3).
 */
#include "clients/cli/tool.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kms/secmem.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_DIGEST,
	OPT_BASE64,
	OPT_VERSION,
	OPT_SIGNATURE,
	OPT_SIGNATURE_BASE64,
	OPT_MAC,
	OPT_MAC_BASE64,
	OPT_DER,
	OPT_CONTEXT,
	OPT_FILE,
	/* A letter is also the option's short form (cli_getopt): -i, -o. */
	OPT_IN = 'i',
	OPT_OUT = 'o',
};

/* What the six commands take; each uses a part. */
struct sign_args {
	const char *key_id;
	const char *in;
	const char *out;
	bool digest;
	bool base64;
	bool der;
	uint32_t version; /* 0: none given */
	const char *signature_file;
	const char *signature_base64;
	const char *mac_file;
	const char *mac_base64;
	const char *file; /* pseudonym --file */
	struct cli_pairs context;
	int n_values;     /* pseudonym VALUE...: argv[optind..] */
};

static int parse(struct cli *cli, int argc, char **argv, const struct option *opts,
                 int max_positionals, struct sign_args *a)
{
	const char *why;
	int opt;

	memset(a, 0, sizeof *a);
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY:
			a->key_id = optarg;
			break;
		case OPT_IN:
			a->in = optarg;
			break;
		case OPT_OUT:
			a->out = optarg;
			break;
		case OPT_DIGEST:
			a->digest = true;
			break;
		case OPT_BASE64:
			a->base64 = true;
			break;
		case OPT_DER:
			a->der = true;
			break;
		case OPT_VERSION:
			if (!cli_parse_u32(optarg, 1, UINT32_MAX, &a->version))
				return cli_usage_error(cli, "--version takes a key version, 1..%" PRIu32,
				                       UINT32_MAX);
			break;
		case OPT_SIGNATURE:
			a->signature_file = optarg;
			break;
		case OPT_SIGNATURE_BASE64:
			a->signature_base64 = optarg;
			break;
		case OPT_MAC:
			a->mac_file = optarg;
			break;
		case OPT_MAC_BASE64:
			a->mac_base64 = optarg;
			break;
		case OPT_CONTEXT:
			if ((why = cli_pairs_add(&a->context, optarg)) != NULL)
				return cli_usage_error(cli, "--context %s: %s", optarg, why);
			break;
		case OPT_FILE:
			a->file = optarg;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	int code = cli_getopt_end(cli, opt, argc, argv, 0, max_positionals);
	if (code != CLI_PROCEED)
		return code;
	a->n_values = argc - optind;
	if (!a->key_id)
		return cli_usage_error(cli, "--key KEY is required");
	return CLI_PROCEED;
}

static bool is_stdio(const char *path)
{
	return !path || strcmp(path, "-") == 0;
}

/* ---- inputs ---- */

/* The message, from -i FILE or stdin, into secure memory (*msg: free it):
 * 1..KMS_SIGN_MESSAGE_MAX bytes, or with --digest a SHA-256 digest.
 * too_long: what to say after "at most N" (NULL: nothing). */
static int read_message(struct cli *cli, const struct sign_args *a, const char *too_long,
                        uint8_t **msg, size_t *len)
{
	size_t total;
	uint8_t *buf = kms_secure_alloc(KMS_SIGN_MESSAGE_MAX);
	int code;

	*msg = NULL;
	*len = 0;
	if (!buf)
		return cli_out_of_secure_memory(cli);
	if ((code = cli_read_input(cli, a->in, buf, KMS_SIGN_MESSAGE_MAX, len, &total)) !=
	    CLI_EXIT_OK) {
		kms_secure_free(buf);
		return code;
	}
	if (a->digest && total != KMS_SIGN_DIGEST_LEN) {
		fprintf(cli->err, "%s: with --digest the input is a SHA-256 digest, %d bytes "
		        "(openssl dgst -sha256 -binary FILE), not %zu\n", cli->path,
		        KMS_SIGN_DIGEST_LEN, total);
		code = CLI_EXIT_USAGE;
	} else if (total == 0) {
		fprintf(cli->err, "%s: input is empty; a message is 1..%d bytes\n", cli->path,
		        KMS_SIGN_MESSAGE_MAX);
		code = CLI_EXIT_USAGE;
	} else if (total > KMS_SIGN_MESSAGE_MAX) {
		fprintf(cli->err, "%s: input is %zu bytes; a message is at most %d%s\n", cli->path,
		        total, KMS_SIGN_MESSAGE_MAX, too_long ? too_long : "");
		code = CLI_EXIT_USAGE;
	}
	if (code != CLI_EXIT_OK) {
		kms_secure_free(buf);
		*len = 0;
		return code;
	}
	*msg = buf;
	return CLI_EXIT_OK;
}

/* A signature or MAC given to check: the raw bytes of a file (flag
 * file_flag), or base64 on the command line (flag b64_flag); one of them.
 * 1..max bytes, exactly max when exact. */
struct tag_spec {
	const char *what;      /* "signature", "MAC" */
	const char *file_flag; /* "--signature" */
	const char *b64_flag;  /* "--signature-base64" */
	const char *made_by;   /* "kms sign" */
	size_t max;
	bool exact;
};

/* Whether a tag file holds base64 text (what --base64 writes), not raw
 * bytes: a raw DER signature holds 0x02 bytes, and a raw Ed25519 one is
 * all base64 characters with a chance of 2^-128. */
static bool is_base64_text(const uint8_t *bytes, size_t len)
{
	uint8_t decoded[KMS_SIGNATURE_MAX];
	size_t n = 0;
	return cli_b64_decode((const char *)bytes, len, decoded, sizeof decoded, &n) && n > 0;
}

static int read_tag(struct cli *cli, const struct tag_spec *t, const struct sign_args *a,
                    const char *file, const char *b64, uint8_t *buf, size_t *len)
{
	size_t total;
	int code;

	*len = 0;
	if (!file == !b64)
		return cli_usage_error(cli, "give %s FILE or %s B64 (one of them)", t->file_flag,
		                       t->b64_flag);
	if (b64) {
		if (!cli_b64_decode(b64, strlen(b64), buf, t->max, len) || (t->exact && *len != t->max))
			return cli_usage_error(cli, "%s: not base64 of a %s (%s%zu bytes)", t->b64_flag,
			                       t->what, t->exact ? "" : "1..", t->max);
		return CLI_EXIT_OK;
	}
	if (is_stdio(file) && is_stdio(a->in))
		return cli_usage_error(cli, "the message and the %s cannot both come from standard "
		                       "input: give -i FILE or %s FILE", t->what, t->file_flag);
	if ((code = cli_read_input(cli, file, buf, t->max, len, &total)) != CLI_EXIT_OK)
		return code;
	if (total == 0 || total > t->max || (t->exact && total != t->max)) {
		*len = 0;
		fprintf(cli->err, "%s: %s is %zu bytes, not a %s (%s%zu raw bytes, as %s writes "
		        "them; base64: %s B64)\n", cli->path, is_stdio(file) ? "standard input" : file,
		        total, t->what, t->exact ? "" : "1..", t->max, t->made_by, t->b64_flag);
		return CLI_EXIT_USAGE;
	}
	/* Sent as it is, kmsd would answer that it does not verify (exit 4). */
	if (is_base64_text(buf, *len)) {
		*len = 0;
		fprintf(cli->err, "%s: %s is base64 text, not raw bytes: give %s \"$(cat %s)\" "
		        "(%s --base64 writes base64; without it, raw bytes)\n", cli->path,
		        is_stdio(file) ? "standard input" : file, t->b64_flag,
		        is_stdio(file) ? "FILE" : file, t->made_by);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* ---- outputs ---- */

/* Raw bytes are not for a terminal: checked before anything is asked of
 * kmsd. */
static int binary_target_check(struct cli *cli, const char *out, bool text, const char *what,
                               const char *text_flag)
{
	if (text || cli->json || !is_stdio(out) || !isatty(fileno(cli->out)))
		return CLI_EXIT_OK;
	fprintf(cli->err, "%s: refusing to write a binary %s to a terminal: give -o FILE, "
	        "redirect standard output, or %s\n", cli->path, what, text_flag);
	return CLI_EXIT_USAGE;
}

/* bytes as base64 (malloc'ed, NUL-terminated, room for a line end), or
 * NULL when out of memory. */
static char *base64_of(const uint8_t *bytes, size_t len)
{
	size_t cap = kms_base64_encoded_len(len) + 2;
	char *text = malloc(cap);
	if (text && !kms_base64_encode(bytes, len, text, cap)) {
		free(text);
		text = NULL;
	}
	return text;
}

/* Raw, or base64 and a line end. */
static int write_bytes(struct cli *cli, const char *out, const uint8_t *bytes, size_t len,
                       bool base64)
{
	if (!base64)
		return cli_write_output(cli, out, bytes, len);
	char *text = base64_of(bytes, len);
	if (!text)
		return cli_out_of_memory(cli);
	size_t n = strlen(text);
	text[n++] = '\n';
	int code = cli_write_output(cli, out, text, n);
	free(text);
	return code;
}

/* {"NAME": base64 of bytes, "key_id": ..., "key_version": ...}, or NULL
 * when out of memory. */
static json_t *json_with_bytes(const char *name, const uint8_t *bytes, size_t len,
                               const char *key_id, uint32_t key_version)
{
	char *text = base64_of(bytes, len);
	json_t *j = text ? json_pack("{s:s, s:o, s:I}", name, text, "key_id", cli_json_str(key_id),
	                             "key_version", (json_int_t)key_version)
	                 : NULL;
	free(text);
	return j;
}

/* Adds "signing_algorithm" to j (taking it); NULL when j is NULL or out of
 * memory. */
static json_t *with_algorithm(json_t *j, kms_signing_algorithm algorithm)
{
	if (j && json_object_set_new(j, "signing_algorithm",
	                             json_string(kms_signing_algorithm_name(algorithm))) != 0) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static int report(struct cli *cli, const kms_error *err)
{
	return cli_report_hint(cli, err, tool_key_state_hint(err));
}

/* A verdict: valid, "WHAT valid: key K version N" on stdout and exit 0;
 * not, one line on stderr and CLI_EXIT_INVALID. --json: the verdict as a
 * JSON object on stdout either way. */
static int verdict(struct cli *cli, const struct sign_args *a, const kms_verification *v,
                   bool mac)
{
	const char *key_id = v->key_id[0] ? v->key_id : a->key_id;
	int code = CLI_EXIT_OK;
	if (cli->json) {
		json_t *j = json_pack("{s:b, s:o, s:I}", mac ? "mac_valid" : "signature_valid",
		                      v->valid, "key_id", cli_json_str(key_id), "key_version",
		                      (json_int_t)v->key_version);
		code = cli_json_print(cli, mac ? j : with_algorithm(j, v->algorithm));
	} else if (v->valid) {
		fprintf(cli->out, "%s valid: key ", mac ? "MAC" : "signature");
		cli_put_clean(cli->out, key_id);
		fprintf(cli->out, " version %" PRIu32 "\n", v->key_version);
	}
	if (code != CLI_EXIT_OK || v->valid)
		return code;
	fprintf(cli->err, "%s: the %s does not verify under key ", cli->path,
	        mac ? "MAC" : "signature");
	cli_put_clean(cli->err, key_id);
	if (a->version)
		fprintf(cli->err, " version %" PRIu32 "\n", a->version);
	else
		fprintf(cli->err, " (any of its versions)\n");
	return CLI_EXIT_INVALID;
}

/* ---- sign, verify ---- */

/* What to do with a message longer than a request takes. */
#define DIGEST_HINT(verb)                                                       \
	": " verb " its SHA-256 with --digest (openssl dgst -sha256 -binary FILE | "  \
	"kms " verb " --key KEY --digest; ECC_P256 keys)"

int tool_sign(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "digest", no_argument, NULL, OPT_DIGEST },
		{ "in", required_argument, NULL, OPT_IN },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "base64", no_argument, NULL, OPT_BASE64 },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct sign_args a;
	kms_client *client = NULL;
	kms_signature sig;
	kms_error err;
	uint8_t *msg = NULL;
	size_t len;
	int code = parse(cli, argc, argv, opts, 0, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = binary_target_check(cli, a.out, a.base64, "signature", "--base64")) !=
	        CLI_EXIT_OK ||
	    (code = read_message(cli, &a, DIGEST_HINT("sign"), &msg, &len)) != CLI_EXIT_OK ||
	    (code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = kms_sign(client, a.key_id, msg, len,
	                         a.digest ? KMS_MESSAGE_DIGEST : KMS_MESSAGE_RAW, &sig, &err);
	kms_secure_free(msg); /* its last use was the request */
	msg = NULL;
	if (st != KMS_OK)
		code = report(cli, &err);
	else if (cli->json)
		code = cli_json_write(cli, a.out,
		                      with_algorithm(json_with_bytes("signature", sig.signature,
		                                                     sig.signature_len, sig.key_id,
		                                                     sig.key_version),
		                                     sig.algorithm));
	else
		code = write_bytes(cli, a.out, sig.signature, sig.signature_len, a.base64);
out:
	kms_secure_free(msg);
	kms_client_close(client);
	cli_pairs_free(&a.context);
	return code;
}

int tool_verify(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "signature", required_argument, NULL, OPT_SIGNATURE },
		{ "signature-base64", required_argument, NULL, OPT_SIGNATURE_BASE64 },
		{ "digest", no_argument, NULL, OPT_DIGEST },
		{ "in", required_argument, NULL, OPT_IN },
		{ "version", required_argument, NULL, OPT_VERSION },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	static const struct tag_spec signature = {
		.what = "signature", .file_flag = "--signature", .b64_flag = "--signature-base64",
		.made_by = "kms sign", .max = KMS_SIGNATURE_MAX,
	};
	struct sign_args a;
	kms_client *client = NULL;
	kms_verification v;
	kms_error err;
	uint8_t sig[KMS_SIGNATURE_MAX], *msg = NULL;
	size_t sig_len, len;
	int code = parse(cli, argc, argv, opts, 0, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = read_tag(cli, &signature, &a, a.signature_file, a.signature_base64, sig,
	                     &sig_len)) != CLI_EXIT_OK ||
	    (code = read_message(cli, &a, DIGEST_HINT("verify"), &msg, &len)) != CLI_EXIT_OK ||
	    (code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = kms_verify(client, a.key_id, msg, len,
	                           a.digest ? KMS_MESSAGE_DIGEST : KMS_MESSAGE_RAW, sig, sig_len,
	                           a.version, &v, &err);
	code = st == KMS_OK ? verdict(cli, &a, &v, false) : report(cli, &err);
out:
	kms_secure_free(msg);
	kms_client_close(client);
	cli_pairs_free(&a.context);
	return code;
}

/* ---- public-key ---- */

static json_t *public_key_json(const kms_public_key *pk)
{
	json_t *j = json_with_bytes("public_key_der", pk->der, pk->der_len, pk->key_id,
	                            pk->key_version);
	if (j && (json_object_set_new(j, "public_key_pem", json_string(pk->pem)) != 0 ||
	          json_object_set_new(j, "key_spec",
	                              json_string(kms_key_spec_name(pk->key_spec))) != 0)) {
		json_decref(j);
		j = NULL;
	}
	return with_algorithm(j, pk->algorithm);
}

int tool_public_key(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "der", no_argument, NULL, OPT_DER },
		{ "out", required_argument, NULL, OPT_OUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct sign_args a;
	kms_client *client = NULL;
	kms_public_key pk = { 0 };
	kms_error err;
	int code = parse(cli, argc, argv, opts, 0, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = binary_target_check(cli, a.out, !a.der, "DER public key", "leave --der out "
	                                "for PEM")) != CLI_EXIT_OK ||
	    (code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if (kms_get_public_key(client, a.key_id, a.version, &pk, &err) != KMS_OK) {
		code = report(cli, &err);
		goto out;
	}
	if (cli->json) {
		code = cli_json_write(cli, a.out, public_key_json(&pk));
	} else if (a.der) {
		code = cli_write_output(cli, a.out, pk.der, pk.der_len);
	} else {
		/* The library checked it: printable ASCII and line ends. */
		size_t n = strlen(pk.pem);
		bool ends = n > 0 && pk.pem[n - 1] == '\n';
		char *text = malloc(n + 2);
		if (!text) {
			code = cli_out_of_memory(cli);
			goto out;
		}
		memcpy(text, pk.pem, n);
		if (!ends)
			text[n++] = '\n';
		code = cli_write_output(cli, a.out, text, n);
		free(text);
	}
out:
	kms_public_key_free(&pk);
	kms_client_close(client);
	cli_pairs_free(&a.context);
	return code;
}

/* ---- mac, verify-mac ---- */

int tool_mac(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "in", required_argument, NULL, OPT_IN },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "base64", no_argument, NULL, OPT_BASE64 },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct sign_args a;
	kms_client *client = NULL;
	kms_mac mac;
	kms_error err;
	uint8_t *msg = NULL;
	size_t len;
	int code = parse(cli, argc, argv, opts, 0, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = binary_target_check(cli, a.out, a.base64, "MAC", "--base64")) != CLI_EXIT_OK ||
	    (code = read_message(cli, &a, NULL, &msg, &len)) != CLI_EXIT_OK ||
	    (code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = kms_generate_mac(client, a.key_id, msg, len, a.version, &mac, &err);
	kms_secure_free(msg); /* its last use was the request */
	msg = NULL;
	if (st != KMS_OK)
		code = report(cli, &err);
	else if (cli->json)
		code = cli_json_write(cli, a.out, json_with_bytes("mac", mac.mac, KMS_MAC_LEN,
		                                                  mac.key_id, mac.key_version));
	else
		code = write_bytes(cli, a.out, mac.mac, KMS_MAC_LEN, a.base64);
out:
	kms_secure_free(msg);
	kms_client_close(client);
	cli_pairs_free(&a.context);
	return code;
}

int tool_verify_mac(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "mac", required_argument, NULL, OPT_MAC },
		{ "mac-base64", required_argument, NULL, OPT_MAC_BASE64 },
		{ "in", required_argument, NULL, OPT_IN },
		{ "version", required_argument, NULL, OPT_VERSION },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	static const struct tag_spec mac_spec = {
		.what = "MAC", .file_flag = "--mac", .b64_flag = "--mac-base64",
		.made_by = "kms mac", .max = KMS_MAC_LEN, .exact = true,
	};
	struct sign_args a;
	kms_client *client = NULL;
	kms_verification v;
	kms_error err;
	uint8_t mac[KMS_MAC_LEN], *msg = NULL;
	size_t mac_len, len;
	int code = parse(cli, argc, argv, opts, 0, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((code = read_tag(cli, &mac_spec, &a, a.mac_file, a.mac_base64, mac, &mac_len)) !=
	        CLI_EXIT_OK ||
	    (code = read_message(cli, &a, NULL, &msg, &len)) != CLI_EXIT_OK ||
	    (code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_status st = kms_verify_mac(client, a.key_id, msg, len, mac, mac_len, a.version, &v,
	                               &err);
	code = st == KMS_OK ? verdict(cli, &a, &v, true) : report(cli, &err);
out:
	kms_secure_free(msg);
	kms_client_close(client);
	cli_pairs_free(&a.context);
	return code;
}

/* ---- pseudonym ----
 *
 * Values go to kmsd in batches (KMS_PSEUDONYM_VALUES_MAX values and
 * TOOL_PSEUDONYM_BATCH_BYTES bytes at most), and their pseudonyms come out
 * in order, one a line, as each batch is answered. Every batch after the
 * first asks for the version the first was made under, so that one run's
 * pseudonyms are all of one version even if the key rotates meanwhile. */

struct pseudo_run {
	struct cli *cli;
	const struct sign_args *a;
	kms_client *client;
	uint32_t version;            /* --version, else the first answer's */
	kms_pseudonym_value *values; /* KMS_PSEUDONYM_VALUES_MAX */
	size_t n;
	uint8_t *bytes;              /* the values' bytes: secure memory */
	size_t used;
	struct cli_sink sink;        /* text; --json: list */
	json_t *list;
	char key_id[KMS_KEY_ID_MAX + 1];
};

/* After a failure: what already went where it cannot be taken back. */
static void pseudo_drop_output(struct pseudo_run *r)
{
	uint64_t gone = cli_sink_abort(&r->sink);
	if (gone > 0)
		fprintf(r->cli->err, "%s: the %" PRIu64 " bytes already written to %s are "
		        "incomplete: the pseudonyms of the first values only, in order\n",
		        r->cli->path, gone, cli_sink_name(&r->sink));
}

/* Sends the batch and puts its pseudonyms out. */
static int pseudo_flush(struct pseudo_run *r)
{
	kms_pseudonyms ps;
	kms_error err;
	int code = CLI_EXIT_OK;

	if (r->n == 0)
		return CLI_EXIT_OK;
	kms_status st = kms_pseudonymize(r->client, r->a->key_id, r->a->context.pairs,
	                                 r->a->context.n, r->values, r->n, r->version, &ps, &err);
	kms_wipe(r->bytes, r->used);
	r->used = 0;
	r->n = 0;
	if (st != KMS_OK)
		return report(r->cli, &err);
	r->version = ps.key_version; /* the library checked: the one asked for, if any */
	memcpy(r->key_id, ps.key_id, sizeof r->key_id);
	for (size_t i = 0; i < ps.n && code == CLI_EXIT_OK; i++) {
		/* The library read each back: [a-z0-9_] only. */
		if (r->list) {
			if (json_array_append_new(r->list, json_string(ps.pseudonyms[i])) != 0)
				code = cli_out_of_memory(r->cli);
		} else {
			char line[KMS_PSEUDONYM_TEXT_SIZE + 1];
			size_t n = strlen(ps.pseudonyms[i]);
			memcpy(line, ps.pseudonyms[i], n);
			line[n++] = '\n';
			if (cli_sink_write(&r->sink, (const uint8_t *)line, n) != 0) {
				fprintf(r->cli->err, "%s: cannot write %s: %s\n", r->cli->prog,
				        cli_sink_name(&r->sink), strerror(r->sink.error));
				code = CLI_EXIT_USAGE;
			}
		}
	}
	kms_pseudonyms_free(&ps);
	return code;
}

/* Takes one value (what names it in messages: "value 3", "line 3 of F"),
 * sending the batch when it is full. */
static int pseudo_add(struct pseudo_run *r, const uint8_t *value, size_t len, const char *what)
{
	if (len == 0 || len > KMS_PSEUDONYM_VALUE_MAX) {
		fprintf(r->cli->err, "%s: %s is %zu bytes; a value is 1..%d\n", r->cli->path, what,
		        len, KMS_PSEUDONYM_VALUE_MAX);
		return CLI_EXIT_USAGE;
	}
	memcpy(r->bytes + r->used, value, len);
	r->values[r->n].bytes = r->bytes + r->used;
	r->values[r->n].len = len;
	r->used += len;
	r->n++;
	if (r->n == KMS_PSEUDONYM_VALUES_MAX ||
	    r->used > TOOL_PSEUDONYM_BATCH_BYTES - KMS_PSEUDONYM_VALUE_MAX)
		return pseudo_flush(r);
	return CLI_EXIT_OK;
}

static int pseudo_from_args(struct pseudo_run *r, int n, char **values)
{
	int code = CLI_EXIT_OK;
	for (int i = 0; i < n && code == CLI_EXIT_OK; i++) {
		char what[32];
		snprintf(what, sizeof what, "value %d", i + 1);
		code = pseudo_add(r, (const uint8_t *)values[i], strlen(values[i]), what);
	}
	return code;
}

/* A whole line (its LF taken off) from the file. */
static int pseudo_line(struct pseudo_run *r, struct cli_input *in, const uint8_t *line,
                       size_t len, uint64_t number)
{
	char what[64];
	snprintf(what, sizeof what, "line %" PRIu64 " of %s", number, in->name);
	if (len > KMS_PSEUDONYM_VALUE_MAX) {
		fprintf(r->cli->err, "%s: %s is longer than %d bytes, the most a value may be\n",
		        r->cli->path, what, KMS_PSEUDONYM_VALUE_MAX);
		return CLI_EXIT_USAGE;
	}
	if (len > 0 && line[len - 1] == '\r') {
		fprintf(r->cli->err, "%s: %s ends with CR: convert the file's CRLF line ends to LF "
		        "(sed -i 's/\\r$//' FILE), so that a value is the same whatever wrote it\n",
		        r->cli->path, what);
		return CLI_EXIT_USAGE;
	}
	return pseudo_add(r, line, len, what);
}

/* One value a line, LF-terminated (the last line may lack it). */
static int pseudo_from_file(struct pseudo_run *r, const char *path)
{
	enum { CHUNK = 64 * 1024 };
	struct cli_input in = { .fd = -1 };
	uint8_t *chunk = kms_secure_alloc(CHUNK);
	uint8_t *line = kms_secure_alloc(KMS_PSEUDONYM_VALUE_MAX + 1);
	size_t line_len = 0, got;
	uint64_t number = 0;
	int code, e;

	if (!chunk || !line) {
		code = cli_out_of_secure_memory(r->cli);
		goto out;
	}
	if ((code = cli_input_open(r->cli, path, &in)) != CLI_EXIT_OK)
		goto out;
	while (code == CLI_EXIT_OK && !in.eof) {
		if ((e = cli_input_read(&in, chunk, CHUNK, &got)) != 0) {
			code = cli_input_error(r->cli, &in, e);
			break;
		}
		for (size_t at = 0; at < got && code == CLI_EXIT_OK;) {
			const uint8_t *lf = memchr(chunk + at, '\n', got - at);
			size_t take = lf ? (size_t)(lf - (chunk + at)) : got - at;
			/* One byte past the limit is kept, to say the line is too long. */
			size_t room = KMS_PSEUDONYM_VALUE_MAX + 1 - line_len;
			memcpy(line + line_len, chunk + at, take < room ? take : room);
			line_len += take < room ? take : room;
			at += take + (lf ? 1 : 0);
			if (lf) {
				code = pseudo_line(r, &in, line, line_len, ++number);
				line_len = 0;
			}
		}
	}
	if (code == CLI_EXIT_OK && line_len > 0)
		code = pseudo_line(r, &in, line, line_len, ++number);
	if (code == CLI_EXIT_OK && number == 0) {
		fprintf(r->cli->err, "%s: %s is empty: give one value a line\n", r->cli->path,
		        in.name);
		code = CLI_EXIT_USAGE;
	}
out:
	cli_input_close(&in);
	kms_secure_free(line);
	kms_secure_free(chunk);
	return code;
}

/* The pseudonyms are out (text) or gathered (--json): finishes the output. */
static int pseudo_finish(struct pseudo_run *r)
{
	if (!r->list)
		return cli_sink_commit(&r->sink);
	json_t *j = json_pack("{s:o, s:I, s:O}", "key_id", cli_json_str(r->key_id), "key_version",
	                      (json_int_t)r->version, "pseudonyms", r->list);
	return cli_json_write(r->cli, r->a->out, j);
}

int tool_pseudonym(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "file", required_argument, NULL, OPT_FILE },
		{ "out", required_argument, NULL, OPT_OUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct sign_args a;
	struct pseudo_run r = { .cli = cli, .a = &a, .sink = { .fd = -1 } };
	int code = parse(cli, argc, argv, opts, INT_MAX, &a);

	if (code != CLI_PROCEED)
		goto out;
	if ((a.file != NULL) == (a.n_values > 0)) {
		code = cli_usage_error(cli, "give the values (VALUE...) or --file FILE, one of them");
		goto out;
	}
	r.version = a.version;
	r.values = calloc(KMS_PSEUDONYM_VALUES_MAX, sizeof *r.values);
	r.bytes = kms_secure_alloc(TOOL_PSEUDONYM_BATCH_BYTES);
	r.list = cli->json ? json_array() : NULL;
	if (!r.values || (cli->json && !r.list)) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if (!r.bytes) {
		code = cli_out_of_secure_memory(cli);
		goto out;
	}
	if ((!cli->json && (code = cli_sink_open(cli, a.out, false, &r.sink)) != CLI_EXIT_OK) ||
	    (code = cli_connect(cli, &r.client)) != CLI_EXIT_OK)
		goto out;
	code = a.file ? pseudo_from_file(&r, a.file) : pseudo_from_args(&r, a.n_values, argv + optind);
	if (code == CLI_EXIT_OK)
		code = pseudo_flush(&r);
	if (code == CLI_EXIT_OK)
		code = pseudo_finish(&r);
out:
	if (code != CLI_EXIT_OK)
		pseudo_drop_output(&r);
	cli_sink_abort(&r.sink);
	json_decref(r.list);
	kms_client_close(r.client);
	kms_secure_free(r.bytes); /* wiped */
	free(r.values);
	cli_pairs_free(&a.context);
	return code;
}
