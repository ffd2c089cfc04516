/*
 * admin_audit_export.c: kms-admin audit export SRC DST: a copy of a log
 * directory that is consistent up to one checkpoint, taken while kmsd
 * writes to SRC.
 *
 * A plain `cp -r` of a live directory can copy the checkpoint after tiles
 * it does not name yet, or name tiles it copied before they existed, and
 * trips over temporary files that vanish. Here the checkpoint is read and
 * verified first; then exactly the files of its tree size are copied (they
 * are immutable, so they cannot change under the copy); the checkpoint is
 * written last; and the copy is verified end to end before the command
 * says it is done. Running it again on the same DST brings it up to date.
 */
#include "clients/cli/admin_audit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/tlog/tlog_tiles.h"
#include "common/tlog/tlog_verify.h"

/* SRC's checkpoint, read once and verified: the copy is of its size. */
static int read_source_checkpoint(struct cli *cli, const char *src, const tlog_verifier *key,
                                  uint8_t **note, size_t *len, tlog_checkpoint *cp)
{
	tlog_note_view view;
	if (tlog_file_read(src, TLOG_CHECKPOINT_PATH, TLOG_NOTE_MAX, note, len) != KMS_OK ||
	    tlog_note_verify((const char *)*note, *len, key, "checkpoint", &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, "checkpoint", cp) != KMS_OK)
		return admin_audit_failed(cli, "%s: %s", src, kms_error_message());
	return CLI_EXIT_OK;
}

/* An older export in DST may be brought up to date, never rewound. */
static int check_not_older(struct cli *cli, const char *dst, const tlog_verifier *key,
                           const tlog_checkpoint *cp)
{
	uint8_t *note = NULL;
	size_t len = 0;
	tlog_note_view view;
	tlog_checkpoint old;
	kms_status st = tlog_file_read(dst, TLOG_CHECKPOINT_PATH, TLOG_NOTE_MAX, &note, &len);
	int code = CLI_EXIT_OK;
	if (st == KMS_NOT_FOUND)
		goto out;
	if (st != KMS_OK ||
	    tlog_note_verify((const char *)note, len, key, "the checkpoint in DST", &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, "the checkpoint in DST", &old) != KMS_OK)
		code = cli_usage_error(cli, "%s: %s: export into a new directory", dst,
		                       kms_error_message());
	else if (old.tree_size > cp->tree_size)
		code = cli_usage_error(cli, "%s holds a checkpoint of size %" PRIu64 ", larger than "
		                       "the source's %" PRIu64 ": export into a new directory", dst,
		                       old.tree_size, cp->tree_size);
out:
	free(note);
	return code;
}

static int print_export(struct cli *cli, const char *dst, uint64_t files,
                        const tlog_verify_report *report)
{
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:b, s:o, s:I, s:I, s:I}", "exported", 1,
		                                     "dir", cli_json_str(dst), "tree_size",
		                                     (json_int_t)report->tree_size, "files",
		                                     (json_int_t)files, "entries_checked",
		                                     (json_int_t)report->entries_checked));
	cli_field(cli->out, "exported", dst);
	cli_field_fmt(cli->out, "tree size", "%" PRIu64, report->tree_size);
	cli_field_fmt(cli->out, "files", "%" PRIu64 " tiles and bundles, then the checkpoint",
	              files + 1);
	cli_field_fmt(cli->out, "verified", "%" PRIu64 " entries against the checkpoint",
	              report->entries_checked);
	return CLI_EXIT_OK;
}

int admin_audit_copy_verified(struct cli *cli, const char *src, const char *dst,
                              const char *vkey, uint64_t *files, tlog_verify_report *report)
{
	tlog_verifier key;
	tlog_checkpoint cp;
	uint8_t *note = NULL;
	size_t note_len = 0;
	int code;
	if (tlog_verifier_key_parse(vkey, &key) != KMS_OK)
		return cli_usage_error(cli, "not a verifier key (NAME+ID+KEY): %s",
		                       kms_error_message());
	if ((code = read_source_checkpoint(cli, src, &key, &note, &note_len, &cp)) != CLI_EXIT_OK)
		goto out;
	if ((code = check_not_older(cli, dst, &key, &cp)) != CLI_EXIT_OK)
		goto out;
	if (tlog_dir_copy(src, dst, cp.tree_size, files) != KMS_OK ||
	    tlog_checkpoint_publish(dst, (const char *)note, note_len) != KMS_OK) {
		code = admin_audit_failed(cli, "copying %s: %s", src, kms_error_message());
		goto out;
	}
	if (tlog_verify_dir(dst, vkey, NULL, NULL, NULL, report) != KMS_OK)
		code = admin_audit_failed(cli, "the copy in %s: %s", dst, report->failure);
out:
	free(note);
	return code;
}

int admin_audit_export(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { AUDIT_KEY_OPTIONS, CLI_BASE_OPTIONS, { 0 } };
	struct admin_audit_key vk = { 0 };
	tlog_verify_report *report = NULL;
	uint64_t files = 0;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0)
		if (!admin_audit_key_option(opt, &vk))
			return cli_usage_error(cli, "option not handled");
	if ((code = cli_getopt_end(cli, opt, argc, argv, 2, 2)) != CLI_PROCEED)
		return code;
	const char *src = argv[optind], *dst = argv[optind + 1];
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if (!vk.given)
		return cli_usage_error(cli, "no verifier key: give --key, --key-file or $%s",
		                       ADMIN_AUDIT_ENV_KEY);
	if ((code = admin_audit_check_dir(cli, src)) != CLI_EXIT_OK)
		return code;
	if (mkdir(dst, 0755) != 0 && errno != EEXIST)
		return cli_usage_error(cli, "cannot create %s: %s", dst, strerror(errno));
	if (!(report = calloc(1, sizeof *report)))
		return cli_out_of_memory(cli);
	code = admin_audit_copy_verified(cli, src, dst, vk.text, &files, report);
	if (code == CLI_EXIT_OK)
		code = print_export(cli, dst, files, report);
	free(report);
	return code;
}
