/*
 * admin_audit_verify.c: kms-admin audit verify DIR: a copy of the log
 * checked end to end, offline, by common/tlog/tlog_verify.h; this file
 * adds that every entry is a JSON object and says what was found.
 */
#include "clients/cli/admin_audit.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tlog/tlog_verify.h"

/* Every kms entry is one JSON object (docs/audit-log.md, section 1). */
static kms_status verify_visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	(void)index;
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, &jerr);
	bool object = doc && json_is_object(doc);
	json_decref(doc);
	if (!doc)
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "not JSON: %s (byte %d)", jerr.text,
		                jerr.position);
	if (!object)
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "not a JSON object");
	(*(uint64_t *)ctx)++;
	return KMS_OK;
}

static int print_report(struct cli *cli, const char *dir, const char *vkey,
                        const tlog_verify_report *report)
{
	char root_hex[ADMIN_AUDIT_HEX_SIZE], root_b64[TLOG_ROOT_B64_LEN + 1];
	admin_audit_hex(report->root, root_hex);
	(void)kms_base64_encode(report->root, TLOG_HASH_SIZE, root_b64, sizeof root_b64);
	if (cli->json) {
		json_t *since_size = report->since_checked
		                             ? json_integer((json_int_t)report->since_size)
		                             : json_null();
		json_t *doc = json_pack("{s:b, s:o, s:o, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o}",
		                        "verified", 1, "dir", cli_json_str(dir),
		                        "origin", cli_json_str(report->origin),
		                        "tree_size", (json_int_t)report->tree_size,
		                        "root", root_hex, "root_base64", root_b64,
		                        "entries_checked", (json_int_t)report->entries_checked,
		                        "bundles_checked", (json_int_t)report->bundles_checked,
		                        "tiles_checked", (json_int_t)report->tiles_checked,
		                        "other_files_checked", (json_int_t)report->extra_checked,
		                        "past_checkpoint", (json_int_t)report->past_checkpoint,
		                        "since_size", since_size);
		return cli_json_print(cli, doc);
	}
	cli_field(cli->out, "verified", dir);
	cli_field(cli->out, "origin", report->origin);
	cli_field_fmt(cli->out, "tree size", "%" PRIu64, report->tree_size);
	cli_field(cli->out, "root", root_hex);
	cli_field(cli->out, "", root_b64);
	cli_field_fmt(cli->out, "entries checked", "%" PRIu64 " in %" PRIu64 " bundles, "
	              "each a JSON object", report->entries_checked, report->bundles_checked);
	cli_field_fmt(cli->out, "tiles checked", "%" PRIu64, report->tiles_checked);
	if (report->extra_checked)
		cli_field_fmt(cli->out, "other files", "%" PRIu64 " older or newer partial tiles and "
		              "bundles agree with the signed tree; %" PRIu64 " of them hold more, past "
		              "the checkpoint (not verified)", report->extra_checked,
		              report->past_checkpoint);
	if (report->since_checked)
		cli_field_fmt(cli->out, "since", "the checkpoint of size %" PRIu64
		              " is a prefix of this log", report->since_size);
	cli_field(cli->out, "key", vkey);
	return CLI_EXIT_OK;
}

int admin_audit_verify(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "since", required_argument, NULL, AUDIT_OPT_SINCE },
		CLI_BASE_OPTIONS, { 0 },
	};
	const char *since_file = NULL;
	struct admin_audit_key vk = { 0 };
	tlog_verify_report *report = NULL;
	char *since = NULL;
	uint64_t objects = 0;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		if (opt != AUDIT_OPT_SINCE)
			return cli_usage_error(cli, "option not handled");
		since_file = optarg;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	const char *dir = argv[optind];
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if (!vk.given)
		return cli_usage_error(cli, "no verifier key: give --key, --key-file or $%s "
		                       "('kms-admin audit key' prints it)", ADMIN_AUDIT_ENV_KEY);
	if ((code = admin_audit_check_dir(cli, dir)) != CLI_EXIT_OK)
		return code;
	if (since_file) {
		size_t len;
		code = admin_audit_read_note_file(cli, "--since", since_file, &since, &len);
		if (code != CLI_EXIT_OK)
			goto out;
		/* tlog_verify_dir takes it as a C string: all of it, or refuse. */
		if (memchr(since, '\0', len)) {
			code = cli_usage_error(cli, "--since %s: not a signed checkpoint",
			                       since_file);
			goto out;
		}
	}
	if (!(report = calloc(1, sizeof *report))) {
		code = cli_out_of_memory(cli);
		goto out;
	}

	kms_status st = tlog_verify_dir(dir, vk.text, since, verify_visit, &objects, report);
	if (st == KMS_OK) {
		code = print_report(cli, dir, vk.text, report);
		goto out;
	}
	if (cli->json)
		(void)cli_json_print(cli, json_pack("{s:b, s:o, s:o}", "verified", 0, "dir",
		                                    cli_json_str(dir), "failure",
		                                    cli_json_str(report->failure)));
	if (st == KMS_INTERNAL || st == KMS_INVALID_ARGUMENT) {
		/* Could not read what is there (or a bug): not a verdict. */
		fprintf(cli->err, "%s: could not finish: ", cli->path);
		cli_put_clean(cli->err, report->failure);
		fputc('\n', cli->err);
		code = CLI_EXIT_USAGE;
	} else {
		code = admin_audit_failed(cli, "%s", report->failure);
	}
out:
	free(report);
	free(since);
	return code;
}
