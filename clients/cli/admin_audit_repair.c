/*
 * admin_audit_repair.c: kms-admin audit repair DIR: rebuilds kmsd's
 * durable record (DIR/log.bin) from the published entry bundles
 * (DIR/public/tile/entries/...), which are a second copy of every entry a
 * signed checkpoint covers.
 *
 * Nothing is believed before it verifies: DIR/public is checked end to end
 * with the verifier key first (common/tlog/tlog_verify.h), and only its
 * verified entries are written. Records past the checkpoint (entries that
 * were acknowledged but not yet published) are kept as log.bin has them;
 * kmsd's start-up recovery judges them again. kmsd must be stopped: the
 * command takes the same lock on log.bin that kmsd holds while it runs.
 */
#include "clients/cli/admin_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/tlog/tlog_records.h"
#include "common/tlog/tlog_verify.h"

#define REPAIR_GROW_MIN (1u << 16)
#define REPAIR_TEMP ".log.bin.repair-XXXXXX"
#define REPAIR_KEPT_TRIES 100

/* log.bin as the bundles say it must be, up to the checkpoint. */
typedef struct rebuilt_log {
	uint8_t *bytes;
	size_t len, cap;
} rebuilt_log;

static kms_status rebuild_visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	rebuilt_log *r = ctx;
	size_t need = TLOG_RECORD_OVERHEAD + len;
	if (r->cap - r->len < need) {
		size_t cap = r->cap ? r->cap : REPAIR_GROW_MIN;
		while (cap - r->len < need)
			cap *= 2;
		uint8_t *grown = realloc(r->bytes, cap);
		KMS_ENSURE(grown != NULL, KMS_INTERNAL, "out of memory for %zu bytes", cap);
		r->bytes = grown;
		r->cap = cap;
	}
	size_t put = tlog_record_put(r->bytes + r->len, r->cap - r->len, entry, len);
	KMS_ENSURE(put == need, KMS_INTERNAL, "entry %llu cannot be recorded",
	           (unsigned long long)index);
	r->len += put;
	return KMS_OK;
}

/* What differs between the old file and the rebuilt records. */
typedef struct repair_diff {
	uint64_t records;        /* records that differ (or are missing) */
	uint64_t first_index;
	uint64_t first_offset;
} repair_diff;

static void compare_records(const rebuilt_log *want, const uint8_t *old, size_t old_len,
                            repair_diff *diff)
{
	memset(diff, 0, sizeof *diff);
	size_t at = 0;
	for (uint64_t i = 0; at < want->len; i++) {
		size_t len = ((size_t)want->bytes[at] << 8 | want->bytes[at + 1]) + TLOG_RECORD_OVERHEAD;
		bool same = at + len <= old_len && memcmp(want->bytes + at, old + at, len) == 0;
		if (!same && diff->records++ == 0) {
			diff->first_index = i;
			diff->first_offset = at;
		}
		at += len;
	}
}

static int read_whole_fd(struct cli *cli, int fd, const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	*out = NULL;
	*len = 0;
	if (fstat(fd, &st) != 0) {
		fprintf(cli->err, "%s: cannot stat %s: %s\n", cli->path, path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	*out = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (*out == NULL)
		return cli_out_of_memory(cli);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = pread(fd, *out + got, (size_t)st.st_size - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(cli->err, "%s: cannot read %s: %s\n", cli->path, path,
			        r < 0 ? strerror(errno) : "file shrank");
			return CLI_EXIT_USAGE;
		}
		got += (size_t)r;
	}
	*len = got;
	return CLI_EXIT_OK;
}

static bool write_all_fd(int fd, const uint8_t *bytes, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t w = write(fd, bytes + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		done += (size_t)w;
	}
	return true;
}

static bool sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = fsync(fd) == 0;
	close(fd);
	return ok;
}

/* A hard link log.bin.damaged-<time>[-<n>] to the old file, a name not
 * taken yet (two repairs can run in one second). */
static bool keep_old(const char *target, const char *dir, time_t now, char kept[static PATH_MAX])
{
	for (unsigned n = 0; n < REPAIR_KEPT_TRIES; n++) {
		if (n == 0)
			snprintf(kept, PATH_MAX, "%s/%s.damaged-%lld", dir, TLOG_RECORDS_FILE,
			         (long long)now);
		else
			snprintf(kept, PATH_MAX, "%s/%s.damaged-%lld-%u", dir, TLOG_RECORDS_FILE,
			         (long long)now, n);
		if (link(target, kept) == 0)
			return true;
		if (errno != EEXIST)
			return false;
	}
	return false;
}

/* Writes the new log.bin beside the old one, keeps the old one as
 * log.bin.damaged-<unix time>, and renames the new one into place. */
static int replace_log(struct cli *cli, const char *dir, const rebuilt_log *want,
                       const uint8_t *tail, size_t tail_len, char kept[static PATH_MAX])
{
	char temp[PATH_MAX], target[PATH_MAX];
	snprintf(target, sizeof target, "%s/%s", dir, TLOG_RECORDS_FILE);
	snprintf(temp, sizeof temp, "%s/" REPAIR_TEMP, dir);
	int fd = mkstemp(temp);
	if (fd < 0) {
		fprintf(cli->err, "%s: cannot create a file in %s: %s\n", cli->path, dir,
		        strerror(errno));
		return CLI_EXIT_USAGE;
	}
	bool ok = fchmod(fd, 0600) == 0 && write_all_fd(fd, want->bytes, want->len) &&
	          write_all_fd(fd, tail, tail_len) && fsync(fd) == 0;
	int err = errno;
	close(fd);
	if (ok && !keep_old(target, dir, time(NULL), kept)) {
		err = errno;
		ok = false;
	}
	if (ok && rename(temp, target) != 0) {
		err = errno;
		ok = false;
	}
	if (!ok) {
		unlink(temp);
		fprintf(cli->err, "%s: cannot write the repaired %s: %s (nothing was changed)\n",
		        cli->path, target, strerror(err));
		return CLI_EXIT_USAGE;
	}
	if (!sync_dir(dir)) {
		fprintf(cli->err, "%s: %s was replaced but its directory did not fsync: %s\n",
		        cli->path, target, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

static int print_result(struct cli *cli, const char *dir, const tlog_verify_report *report,
                        const repair_diff *diff, size_t tail_len, const char *kept)
{
	if (cli->json) {
		json_t *doc = json_pack("{s:b, s:o, s:I, s:I, s:I, s:o}", "repaired",
		                        diff->records > 0, "dir", cli_json_str(dir), "tree_size",
		                        (json_int_t)report->tree_size, "records_rewritten",
		                        (json_int_t)diff->records, "tail_bytes_kept",
		                        (json_int_t)tail_len, "damaged_copy",
		                        diff->records > 0 ? cli_json_str(kept) : json_null());
		return cli_json_print(cli, doc);
	}
	if (diff->records == 0) {
		cli_field_fmt(cli->out, "nothing to repair", "%s/%s holds the %" PRIu64
		              " signed entries as published", dir, TLOG_RECORDS_FILE,
		              report->tree_size);
		return CLI_EXIT_OK;
	}
	cli_field_fmt(cli->out, "repaired", "%s/%s", dir, TLOG_RECORDS_FILE);
	cli_field_fmt(cli->out, "records rewritten", "%" PRIu64 " (the first: record %" PRIu64
	              " at offset %" PRIu64 ")", diff->records, diff->first_index,
	              diff->first_offset);
	cli_field_fmt(cli->out, "from", "the entry bundles of the verified checkpoint of size %"
	              PRIu64, report->tree_size);
	cli_field_fmt(cli->out, "kept after them", "%zu bytes past the checkpoint", tail_len);
	cli_field(cli->out, "damaged copy", kept);
	return CLI_EXIT_OK;
}

/* The records past the checkpoint are in no bundle: a damaged one there
 * cannot be rebuilt. Say where it is, and how to drop it knowingly. A bad
 * last record with nothing whole after it is a torn write, which kmsd
 * cuts by itself. */
static int check_tail(struct cli *cli, uint64_t first_index, size_t first_offset,
                      const uint8_t *tail, size_t tail_len)
{
	tlog_records_scan scan;
	if (tlog_records_scan_bytes(tail, tail_len, NULL, NULL, &scan) != KMS_OK)
		return admin_audit_failed(cli, "%s", kms_error_message());
	if (!scan.after_reach_end)
		return CLI_EXIT_OK;
	return admin_audit_failed(cli, "record %" PRIu64 " at offset %" PRIu64 " of %s is "
	                          "damaged (%s) and past the published checkpoint, so no bundle "
	                          "holds it: to drop it and the %" PRIu64 " records after it, "
	                          "truncate the file to %" PRIu64 " bytes (docs/audit-log.md)",
	                          first_index + scan.whole, first_offset + scan.whole_bytes,
	                          TLOG_RECORDS_FILE, tlog_record_fault_text(scan.fault),
	                          scan.whole_after, (uint64_t)first_offset + scan.whole_bytes);
}

/* The lock kmsd holds on log.bin while it runs. */
static int lock_log(struct cli *cli, const char *dir, int *fd)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, TLOG_RECORDS_FILE);
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		fprintf(cli->err, "%s: cannot open %s: %s\n", cli->path, path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(cli->err, "%s: %s is in use (is kmsd running?): stop kmsd first\n",
		        cli->path, path);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int admin_audit_repair(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { AUDIT_KEY_OPTIONS, CLI_BASE_OPTIONS, { 0 } };
	struct admin_audit_key vk = { 0 };
	tlog_verify_report *report = NULL;
	rebuilt_log want = { 0 };
	uint8_t *old = NULL;
	size_t old_len = 0;
	char public_dir[PATH_MAX], kept[PATH_MAX] = "";
	int opt, code, fd = -1;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0)
		if (!admin_audit_key_option(opt, &vk))
			return cli_usage_error(cli, "option not handled");
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	const char *dir = argv[optind];
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if (!vk.given)
		return cli_usage_error(cli, "no verifier key: give --key, --key-file or $%s (the "
		                       "one you pinned, not one read from DIR)", ADMIN_AUDIT_ENV_KEY);
	if (snprintf(public_dir, sizeof public_dir, "%s/public", dir) >= (int)sizeof public_dir)
		return cli_usage_error(cli, "%s: path too long", dir);
	if ((code = admin_audit_check_dir(cli, public_dir)) != CLI_EXIT_OK)
		return code;
	if ((code = lock_log(cli, dir, &fd)) != CLI_EXIT_OK)
		goto out;
	if (!(report = calloc(1, sizeof *report))) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	kms_status st = tlog_verify_dir(public_dir, vk.text, NULL, rebuild_visit, &want, report);
	if (st != KMS_OK) {
		code = admin_audit_failed(cli, "%s does not verify, so it cannot repair log.bin: %s",
		                          public_dir, report->failure);
		goto out;
	}
	if ((code = read_whole_fd(cli, fd, dir, &old, &old_len)) != CLI_EXIT_OK)
		goto out;
	repair_diff diff;
	compare_records(&want, old, old_len, &diff);
	size_t tail_len = old_len > want.len ? old_len - want.len : 0;
	const uint8_t *tail = tail_len ? old + want.len : old;
	if (diff.records > 0 &&
	    (code = replace_log(cli, dir, &want, tail, tail_len, kept)) != CLI_EXIT_OK)
		goto out;
	if ((code = print_result(cli, dir, report, &diff, tail_len, kept)) != CLI_EXIT_OK)
		goto out;
	code = check_tail(cli, report->tree_size, want.len, tail, tail_len);
out:
	if (fd >= 0)
		close(fd);
	free(old);
	free(want.bytes);
	free(report);
	return code;
}
