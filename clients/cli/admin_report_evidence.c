/*
 * admin_report_evidence.c: kms-admin report evidence: a directory an
 * auditor can take away and check without kmsd (docs/evidence-pack.md).
 *
 * The directory is itself a copy of the audit log in the tlog-tiles layout
 * (its checkpoint, tile/...), taken the way `audit export` takes one and
 * verified, with the verifier key beside it; next to those, the residency
 * report and key inventory as kmsd gave them, and what the verified
 * entries of the window say: consent-gated uses per purpose, erasures with
 * their basis, denials by reason. `kms-admin audit verify DIR` checks the
 * copy; `audit query --log DIR` and `audit show N DIR` read it.
 */
#include "clients/cli/admin.h"
#include "clients/cli/admin_audit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"

#define VKEY_FILE "verifier-key"

/* What the window's entries add up to. */
struct evidence {
	struct admin_audit_window window;
	uint64_t entries;      /* in the window */
	json_t *consent_uses;  /* consent.purpose -> count, consent allowed */
	json_t *context_uses;  /* context purpose -> count, no consent member, allowed */
	json_t *erasures;      /* array */
	json_t *authz_denials; /* authz.reason -> count */
	json_t *consent_denials; /* consent.reason -> count */
	json_t *refusals;        /* refusals before authentication: error -> count */
};

static kms_status count_by(json_t *counts, const char *name, json_int_t by)
{
	json_t *n = json_object_get(counts, name);
	if (n)
		KMS_ENSURE(json_integer_set(n, json_integer_value(n) + by) == 0, KMS_INTERNAL,
		           "out of memory");
	else
		KMS_ENSURE(json_object_set_new(counts, name, json_integer(by)) == 0, KMS_INTERNAL,
		           "out of memory");
	return KMS_OK;
}

static kms_status count(json_t *counts, const char *name)
{
	return count_by(counts, name, 1);
}

static bool is_erasure(json_t *entry)
{
	const char *op = admin_audit_member(entry, "operation");
	return !strcmp(op, "erase_data_principal") || !strcmp(op, "retention_erasure");
}

static kms_status add_erasure(struct evidence *ev, uint64_t index, json_t *entry)
{
	/* An intent says what was asked; its outcome what happened. */
	if (!strcmp(admin_audit_member(entry, "phase"), "intent"))
		return KMS_OK;
	json_t *row = json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "index",
	                        (json_int_t)index, "time",
	                        cli_json_str(admin_audit_member(entry, "time")), "operation",
	                        cli_json_str(admin_audit_member(entry, "operation")), "principal",
	                        cli_json_str(admin_audit_member(entry, "principal")),
	                        "data_principal",
	                        cli_json_str(admin_audit_member(entry, "data_principal")),
	                        "key_id", cli_json_str(admin_audit_member(entry, "key_id")),
	                        "basis", cli_json_str(admin_audit_member(entry, "basis")),
	                        "status", cli_json_str(admin_audit_member(entry, "status")));
	KMS_ENSURE(row && json_array_append_new(ev->erasures, row) == 0, KMS_INTERNAL,
	           "out of memory");
	return KMS_OK;
}

static kms_status add_use(struct evidence *ev, json_t *entry)
{
	json_t *consent = json_object_get(entry, "consent");
	if (consent) {
		if (strcmp(admin_audit_member(consent, "decision"), "allow") != 0)
			return KMS_OK;
		const char *purpose = admin_audit_member(consent, "purpose");
		return count(ev->consent_uses, purpose[0] ? purpose : "(none)");
	}
	json_t *context = json_object_get(entry, "encryption_context");
	const char *purpose = json_string_value(json_object_get(context, "purpose"));
	if (!purpose || !purpose[0] || admin_audit_entry_denied(entry))
		return KMS_OK;
	return count(ev->context_uses, purpose);
}

static kms_status add_denial(struct evidence *ev, json_t *entry)
{
	/* Refusals before authentication come coalesced: one entry counts
	 * `refused` of them (docs/audit-log.md), by the error they got. */
	json_t *refused = json_object_get(entry, "refused");
	if (json_is_integer(refused) && json_integer_value(refused) > 0)
		return count_by(ev->refusals, admin_audit_member(entry, "error"),
		                json_integer_value(refused));
	json_t *authz = json_object_get(entry, "authz");
	json_t *consent = json_object_get(entry, "consent");
	if (authz && strcmp(admin_audit_member(authz, "decision"), "allow") != 0)
		KMS_GUARD(count(ev->authz_denials, admin_audit_member(authz, "reason")));
	/* A consent operation's member (import, status) has no decision. */
	if (consent && !strcmp(admin_audit_member(consent, "decision"), "deny"))
		KMS_GUARD(count(ev->consent_denials, admin_audit_member(consent, "reason")));
	return KMS_OK;
}

static kms_status evidence_visit(void *ctx, uint64_t index, json_t *entry)
{
	struct evidence *ev = ctx;
	if (!admin_audit_in_window(&ev->window, entry))
		return KMS_OK;
	ev->entries++;
	if (is_erasure(entry))
		KMS_GUARD(add_erasure(ev, index, entry));
	KMS_GUARD(add_use(ev, entry));
	return add_denial(ev, entry);
}

/* {"name": count} as [{"<member>": name, "count": n}], sorted by name. */
static json_t *count_list(json_t *counts, const char *member)
{
	json_t *tally = json_object(), *list = NULL;
	const char *name;
	json_t *n;
	if (!tally)
		return NULL;
	json_object_foreach(counts, name, n)
		if (json_object_set_new(tally, name, json_pack("{s:I}", "count",
		                                               (json_int_t)json_integer_value(n))))
			goto out;
	list = admin_audit_tally_list(tally, member);
out:
	json_decref(tally);
	return list;
}

/* Every file of the pack names the window and the checkpoint it is from. */
static json_t *header(const struct evidence *ev, const tlog_verify_report *report)
{
	return json_pack("{s:s, s:s, s:o, s:I, s:o}", "since", ev->window.since, "until",
	                 ev->window.until, "origin", cli_json_str(report->origin),
	                 "checkpoint_size", (json_int_t)report->tree_size, "root",
	                 admin_audit_json_hex(report->root));
}

static json_t *with_header(json_t *doc, const struct evidence *ev,
                           const tlog_verify_report *report)
{
	json_t *h = header(ev, report);
	if (!doc || !h || json_object_update(h, doc) != 0) {
		json_decref(h);
		json_decref(doc);
		return NULL;
	}
	json_decref(doc);
	return h;
}

static int write_json(struct cli *cli, const char *dir, const char *name, json_t *doc)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return cli_json_write(cli, path, doc);
}

static int write_text(struct cli *cli, const char *dir, const char *name, const char *text)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return cli_write_output(cli, path, text, strlen(text));
}

static const char readme_format[] =
	"# Evidence pack\n"
	"\n"
	"Made by `kms-admin report evidence` for the window %s to %s (from\n"
	"inclusive, to exclusive), from the audit log `%s` at its signed\n"
	"checkpoint of size %" PRIu64 " (root %s).\n"
	"\n"
	"| file | what |\n"
	"|---|---|\n"
	"| `checkpoint`, `tile/` | a copy of the audit log (C2SP tlog-tiles): the signed checkpoint, the entry bundles and hash tiles it covers |\n"
	"| `" VKEY_FILE "` | the log's verifier key (Ed25519), one line |\n"
	"| `residency.json` | the region, the HSM token and whether kmsd is pinned to it, the KEKs, the store's location, every key and where each version lives |\n"
	"| `keys.json` | the key inventory: every key's metadata |\n"
	"| `consent-uses.json` | allowed uses of keys in the window per purpose: consent-gated (the entry's `consent` member) and others (the context's `purpose`) |\n"
	"| `erasures.json` | data-principal erasures in the window with their legal basis |\n"
	"| `denials.json` | refusals in the window by reason: authorization, consent, and refusals before authentication (by error, each coalesced entry weighted by how many it counts) |\n"
	"\n"
	"## Verify it\n"
	"\n"
	"1. Compare `" VKEY_FILE "` with the key you hold from another channel (the\n"
	"   operator's published key, or `kms-admin audit key` asked of kmsd\n"
	"   earlier). A pack is only as good as the key it is checked with.\n"
	"2. Check the log, offline (no kmsd, no HSM):\n"
	"\n"
	"       kms-admin audit verify . --key-file " VKEY_FILE "\n"
	"\n"
	"   It must say `tree size %" PRIu64 "` and this root. Any changed byte in\n"
	"   `checkpoint` or `tile/` makes it fail (exit 1, one line naming what).\n"
	"   With a checkpoint of this log you kept from before, add\n"
	"   `--since OLD_CHECKPOINT` to check that the log only grew.\n"
	"3. Check that the three reports derived from the log (`consent-uses.json`,\n"
	"   `erasures.json`, `denials.json`) are what the verified log says:\n"
	"\n"
	"       kms-admin report evidence --check . --key-file " VKEY_FILE "\n"
	"\n"
	"   It verifies the log again, recomputes them for the window they name and\n"
	"   compares; a changed report fails it (exit 1, naming the file).\n"
	"4. Recompute anything else from the verified entries, e.g. what\n"
	"   one credential touched (the breach query):\n"
	"\n"
	"       kms-admin audit query --log . --key-file " VKEY_FILE " \\\n"
	"           --principal NAME --since %s --until %s\n"
	"\n"
	"   and any single entry by its number (`index` in `erasures.json`):\n"
	"\n"
	"       kms-admin audit show N . --key-file " VKEY_FILE "\n"
	"\n"
	"`residency.json` and `keys.json` are what kmsd reported when the pack was\n"
	"made; they are not signed. Every key operation, and every change to a\n"
	"key, is in the log.\n";

static int write_readme(struct cli *cli, const char *dir, const struct evidence *ev,
                        const tlog_verify_report *report)
{
	char root[ADMIN_AUDIT_HEX_SIZE], *text = NULL;
	admin_audit_hex(report->root, root);
	if (asprintf(&text, readme_format, ev->window.since, ev->window.until, report->origin,
	             report->tree_size, root, report->tree_size, ev->window.since,
	             ev->window.until) < 0)
		return cli_out_of_memory(cli);
	int code = write_text(cli, dir, "README.md", text);
	free(text);
	return code;
}

/* The reports derived from the log: what `--check` recomputes. */
static const char *const derived_names[] = { "consent-uses.json", "erasures.json",
	                                     "denials.json" };
#define N_DERIVED (sizeof derived_names / sizeof derived_names[0])

static void derived_reports(const struct evidence *ev, const tlog_verify_report *report,
                            json_t *out[N_DERIVED])
{
	out[0] = with_header(json_pack("{s:o, s:o}", "consent_gated",
	                               count_list(ev->consent_uses, "purpose"),
	                               "by_context_purpose",
	                               count_list(ev->context_uses, "purpose")),
	                     ev, report);
	out[1] = with_header(json_pack("{s:O}", "erasures", ev->erasures), ev, report);
	out[2] = with_header(json_pack("{s:o, s:o, s:o}", "authz",
	                               count_list(ev->authz_denials, "reason"), "consent",
	                               count_list(ev->consent_denials, "reason"),
	                               "before_authentication",
	                               count_list(ev->refusals, "error")),
	                     ev, report);
}

static int write_pack(struct cli *cli, const char *dir, const struct admin_residency *r,
                      const struct evidence *ev, const struct admin_audit_source *src,
                      const tlog_verify_report *report)
{
	char vkey_line[TLOG_VERIFIER_KEY_MAX + 2];
	snprintf(vkey_line, sizeof vkey_line, "%s\n", src->vkey);
	json_t *keys = admin_json_keys(r->keys.items, r->keys.n, NULL);
	if (keys)
		json_object_del(keys, "next_page_token");
	int code = write_text(cli, dir, VKEY_FILE, vkey_line);
	if (code == CLI_EXIT_OK)
		code = write_json(cli, dir, "residency.json", admin_residency_json(r));
	if (code == CLI_EXIT_OK)
		code = write_json(cli, dir, "keys.json", keys);
	else
		json_decref(keys);
	json_t *derived[N_DERIVED];
	derived_reports(ev, report, derived);
	for (size_t i = 0; i < N_DERIVED; i++) {
		if (code == CLI_EXIT_OK)
			code = write_json(cli, dir, derived_names[i], derived[i]);
		else
			json_decref(derived[i]);
	}
	if (code == CLI_EXIT_OK)
		code = write_readme(cli, dir, ev, report);
	return code;
}

static int print_done(struct cli *cli, const char *dir, const struct evidence *ev,
                      const tlog_verify_report *report)
{
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:s, s:s, s:I, s:I, s:b}", "dir",
		                                     cli_json_str(dir), "since", ev->window.since,
		                                     "until", ev->window.until, "checkpoint_size",
		                                     (json_int_t)report->tree_size, "entries",
		                                     (json_int_t)ev->entries, "verified", 1));
	cli_field(cli->out, "evidence pack", dir);
	cli_field_fmt(cli->out, "window", "%s to %s", ev->window.since, ev->window.until);
	cli_field_fmt(cli->out, "audit log", "%s, verified against its signed checkpoint of "
	              "size %" PRIu64, report->origin, report->tree_size);
	cli_field_fmt(cli->out, "entries", "%" PRIu64 " in the window", ev->entries);
	cli_field_fmt(cli->out, "verify", "kms-admin audit verify %s --key-file %s/" VKEY_FILE,
	              dir, dir);
	return CLI_EXIT_OK;
}

/* Copies the log into dir, verifies it there and reads the window from
 * the copy; then writes the reports. */
static int make_pack(struct cli *cli, const char *dir, const char *log_dir,
                     const struct admin_audit_key *vk, const struct admin_residency *r,
                     struct evidence *ev)
{
	struct admin_audit_source src;
	tlog_verify_report *report = calloc(1, sizeof *report);
	uint64_t files = 0;
	int code = report ? CLI_EXIT_OK : cli_out_of_memory(cli);
	if (code == CLI_EXIT_OK)
		code = admin_audit_source_resolve(cli, log_dir, vk, &r->health, &r->checkpoint,
		                                  &src);
	if (code == CLI_EXIT_OK && mkdir(dir, 0755) != 0)
		code = cli_usage_error(cli, "cannot create %s: %s%s", dir, strerror(errno),
		                       errno == EEXIST ? ": give a new directory" : "");
	if (code == CLI_EXIT_OK)
		code = admin_audit_copy_verified(cli, src.dir, dir, src.vkey, &files, report);
	if (code == CLI_EXIT_OK)
		code = admin_audit_scan(cli, dir, src.vkey, evidence_visit, ev, report);
	if (code == CLI_EXIT_OK)
		code = write_pack(cli, dir, r, ev, &src, report);
	if (code == CLI_EXIT_OK)
		code = print_done(cli, dir, ev, report);
	free(report);
	return code;
}

static void evidence_free(struct evidence *ev)
{
	json_decref(ev->consent_uses);
	json_decref(ev->context_uses);
	json_decref(ev->erasures);
	json_decref(ev->authz_denials);
	json_decref(ev->consent_denials);
	json_decref(ev->refusals);
}

/* --check DIR: the derived reports of a pack recomputed from its verified
 * log copy and compared with its files. */
static int check_pack(struct cli *cli, const char *dir, struct admin_audit_key *vk,
                      struct evidence *ev)
{
	char path[4200], vkey[TLOG_VERIFIER_KEY_MAX];
	snprintf(path, sizeof path, "%s/consent-uses.json", dir);
	json_error_t jerr;
	json_t *uses = json_load_file(path, 0, &jerr);
	const char *since = json_string_value(json_object_get(uses, "since"));
	const char *until = json_string_value(json_object_get(uses, "until"));
	int code = since && until ? admin_audit_window_parse(cli, since, until, &ev->window)
	                          : cli_usage_error(cli, "%s: not an evidence pack's report "
	                                            "(no since and until)", path);
	json_decref(uses);
	if (code != CLI_EXIT_OK)
		return code;
	if (vk->given) {
		snprintf(vkey, sizeof vkey, "%s", vk->text);
	} else {
		/* The pack's own key checks only that the pack agrees with itself. */
		snprintf(path, sizeof path, "%s/" VKEY_FILE, dir);
		FILE *f = fopen(path, "r");
		bool ok = f && fgets(vkey, sizeof vkey, f);
		if (f)
			fclose(f);
		if (!ok)
			return cli_usage_error(cli, "%s: cannot read it: give --key or --key-file", path);
		vkey[strcspn(vkey, "\r\n")] = '\0';
		fprintf(cli->err, "%s: checking with the pack's own %s; give --key-file with the "
		        "key you hold to check it is the log you trust\n", cli->path, VKEY_FILE);
	}
	tlog_verify_report *report = calloc(1, sizeof *report);
	if (!report)
		return cli_out_of_memory(cli);
	code = admin_audit_scan(cli, dir, vkey, evidence_visit, ev, report);
	json_t *derived[N_DERIVED] = { 0 };
	if (code == CLI_EXIT_OK)
		derived_reports(ev, report, derived);
	size_t differ = 0;
	for (size_t i = 0; code == CLI_EXIT_OK && i < N_DERIVED; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, derived_names[i]);
		json_t *file = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (!derived[i]) {
			code = cli_out_of_memory(cli);
		} else if (!file || !json_equal(file, derived[i])) {
			fprintf(cli->err, "%s: %s: does not match the verified log (changed, or from "
			        "another log)\n", cli->path, derived_names[i]);
			differ++;
		}
		json_decref(file);
	}
	for (size_t i = 0; i < N_DERIVED; i++)
		json_decref(derived[i]);
	if (code == CLI_EXIT_OK && differ)
		code = CLI_EXIT_REFUSED;
	if (code == CLI_EXIT_OK)
		fprintf(cli->out, "%s: the log verified (tree size %" PRIu64 ") and its %zu derived "
		        "reports match it\n", dir, report->tree_size, N_DERIVED);
	free(report);
	return code;
}

int admin_report_evidence(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "since", required_argument, NULL, AUDIT_OPT_SINCE },
		{ "until", required_argument, NULL, AUDIT_OPT_UNTIL },
		{ "log", required_argument, NULL, AUDIT_OPT_LOG },
		{ "out", required_argument, NULL, 'o' }, /* -o DIR */
		{ "check", required_argument, NULL, 'c' }, /* --check DIR */
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct admin_audit_key vk = { 0 };
	struct evidence ev = { 0 };
	const char *since = NULL, *until = NULL, *log_dir = NULL, *dir = NULL, *check = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		switch (opt) {
		case AUDIT_OPT_SINCE: since = optarg; break;
		case AUDIT_OPT_UNTIL: until = optarg; break;
		case AUDIT_OPT_LOG: log_dir = optarg; break;
		case 'o': dir = optarg; break;
		case 'c': check = optarg; break;
		default: return cli_usage_error(cli, "option not handled");
		}
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	if (check && (dir || since || until || log_dir))
		return cli_usage_error(cli, "--check DIR takes no -o, --since, --until or --log: "
		                       "the window is the pack's");
	if (!check && (!dir || !dir[0]))
		return cli_usage_error(cli, "give -o DIR: a new directory for the pack");
	if (!check && (code = admin_audit_window_parse(cli, since, until, &ev.window)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	ev.consent_uses = json_object();
	ev.context_uses = json_object();
	ev.erasures = json_array();
	ev.authz_denials = json_object();
	ev.consent_denials = json_object();
	ev.refusals = json_object();
	if (!ev.consent_uses || !ev.context_uses || !ev.erasures || !ev.authz_denials ||
	    !ev.consent_denials || !ev.refusals) {
		evidence_free(&ev);
		return cli_out_of_memory(cli);
	}
	if (check) {
		code = check_pack(cli, check, &vk, &ev);
		evidence_free(&ev);
		return code;
	}
	kms_client *client = NULL;
	struct admin_residency r;
	memset(&r, 0, sizeof r);
	code = cli_connect(cli, &client);
	if (code == CLI_EXIT_OK) {
		code = admin_residency_fetch(cli, client, &r);
		kms_client_close(client);
	}
	if (code == CLI_EXIT_OK)
		code = make_pack(cli, dir, log_dir, &vk, &r, &ev);
	admin_residency_free(&r);
	evidence_free(&ev);
	return code;
}
