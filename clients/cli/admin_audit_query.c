/*
 * admin_audit_query.c: kms-admin audit query, the breach query: which keys,
 * data principals and purposes one credential touched in a time window,
 * read from a copy of the audit log (or kmsd's own published directory)
 * that is verified end to end against its signed checkpoint before any
 * entry is counted. Also what `report evidence` shares with it: the
 * window, the log's source and the verified walk over the entries.
 */
#include "clients/cli/admin_audit.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tlog/tlog_verify.h"

/* ---- the window ---- */

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static unsigned number(const char *s, size_t n)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

/* YYYY-MM-DDTHH:MM:SS: the fields in range (a day up to 31 in any month:
 * the entries' own times are compared as text, so a 31st that does not
 * exist only widens a bound). */
static bool date_time_ok(const char *t)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t i = 0; i < sizeof shape - 1; i++)
		if (shape[i] == 'd' ? !all_digits(t + i, 1) : t[i] != shape[i])
			return false;
	unsigned month = number(t + 5, 2), day = number(t + 8, 2);
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && number(t + 11, 2) < 24 &&
	       number(t + 14, 2) < 60 && number(t + 17, 2) < 61;
}

bool admin_audit_time_parse(const char *text, char out[static ADMIN_AUDIT_TIME_SIZE])
{
	size_t len = text ? strlen(text) : 0;
	if (len < 20 || len > 40 || !date_time_ok(text))
		return false;
	const char *rest = text + 19;
	char fraction[7] = "000000";
	if (*rest == '.') {
		size_t n = strspn(rest + 1, "0123456789");
		if (n == 0 || n > 6)
			return false;
		memcpy(fraction, rest + 1, n);
		rest += 1 + n;
	}
	if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
		return false;
	snprintf(out, ADMIN_AUDIT_TIME_SIZE, "%.19s.%sZ", text, fraction);
	return true;
}

int admin_audit_window_parse(struct cli *cli, const char *since, const char *until,
                             struct admin_audit_window *w)
{
	if (!since || !until)
		return cli_usage_error(cli, "give --since and --until (RFC 3339 UTC, e.g. "
		                       "2026-11-28T00:00:00Z)");
	if (!admin_audit_time_parse(since, w->since))
		return cli_usage_error(cli, "--since %s: not an RFC 3339 UTC time such as "
		                       "2026-11-28T00:00:00Z", since);
	if (!admin_audit_time_parse(until, w->until))
		return cli_usage_error(cli, "--until %s: not an RFC 3339 UTC time such as "
		                       "2026-11-28T00:00:00Z", until);
	if (strcmp(w->since, w->until) >= 0)
		return cli_usage_error(cli, "--since must be before --until");
	return CLI_EXIT_OK;
}

/* The entry's time, when it is a time in the one form entries write
 * (docs/audit-log.md), so that it compares as text and prints as it is;
 * false for anything else (its bytes are never shown). */
static bool entry_time(json_t *entry, char out[static ADMIN_AUDIT_TIME_SIZE])
{
	const char *t = json_string_value(json_object_get(entry, "time"));
	return t && strlen(t) == ADMIN_AUDIT_TIME_SIZE - 1 && admin_audit_time_parse(t, out) &&
	       strcmp(out, t) == 0;
}

bool admin_audit_in_window(const struct admin_audit_window *w, json_t *entry)
{
	char t[ADMIN_AUDIT_TIME_SIZE];
	if (!entry_time(entry, t))
		return false;
	return strcmp(t, w->since) >= 0 && strcmp(t, w->until) < 0;
}

/* ---- what an entry says ---- */

const char *admin_audit_member(json_t *object, const char *name)
{
	const char *s = json_string_value(json_object_get(object, name));
	return s ? s : "";
}

bool admin_audit_entry_denied(json_t *entry)
{
	json_t *authz = json_object_get(entry, "authz");
	json_t *consent = json_object_get(entry, "consent");
	if (authz && strcmp(admin_audit_member(authz, "decision"), "allow") != 0)
		return true;
	/* A consent operation's member (import, status) has no decision. */
	if (consent && !strcmp(admin_audit_member(consent, "decision"), "deny"))
		return true;
	return !strcmp(admin_audit_member(entry, "status"), "ACCESS_DENIED");
}

/* ---- the log: where, with which key, walked verified ---- */

int admin_audit_source_resolve(struct cli *cli, const char *log_dir,
                               const struct admin_audit_key *vk, const kms_health *health,
                               const kms_checkpoint *cp, struct admin_audit_source *out)
{
	memset(out, 0, sizeof *out);
	if (log_dir) {
		if (strlen(log_dir) >= sizeof out->dir)
			return cli_usage_error(cli, "--log: path too long");
		memcpy(out->dir, log_dir, strlen(log_dir) + 1);
	} else if (!health || !health->data_dir || !health->data_dir[0]) {
		return cli_usage_error(cli, "kmsd did not say where its data directory is (it tells "
		                       "only an admin or an auditor): give --log DIR, a copy "
		                       "made with 'kms-admin audit export'");
	} else if ((size_t)snprintf(out->dir, sizeof out->dir, "%s/audit/public",
	                            health->data_dir) >= sizeof out->dir) {
		return cli_usage_error(cli, "kmsd's data directory: path too long");
	}
	if (vk->given) {
		snprintf(out->vkey, sizeof out->vkey, "%s", vk->text);
		return admin_audit_check_dir(cli, out->dir);
	}
	if (!cp || !cp->verifier_key || !cp->verifier_key[0] ||
	    strlen(cp->verifier_key) >= sizeof out->vkey)
		return cli_usage_error(cli, "no verifier key: give --key, --key-file or $%s",
		                       ADMIN_AUDIT_ENV_KEY);
	snprintf(out->vkey, sizeof out->vkey, "%s", cp->verifier_key);
	out->key_from_kmsd = true;
	fprintf(cli->err, "%s: note: checking with the key kmsd sent (", cli->path);
	cli_put_clean(cli->err, out->vkey);
	fprintf(cli->err, "); pin the key you trust with --key\n");
	return admin_audit_check_dir(cli, out->dir);
}

struct scan {
	struct cli *cli;
	admin_audit_json_fn fn;
	void *ctx;
};

static kms_status scan_visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	struct scan *s = ctx;
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "not a JSON object");
	}
	kms_status st = s->fn(s->ctx, index, doc);
	json_decref(doc);
	return st;
}

int admin_audit_scan(struct cli *cli, const char *dir, const char *vkey, admin_audit_json_fn fn,
                     void *ctx, tlog_verify_report *report)
{
	struct scan s = { .cli = cli, .fn = fn, .ctx = ctx };
	kms_status st = tlog_verify_dir(dir, vkey, NULL, scan_visit, &s, report);
	if (st == KMS_OK)
		return CLI_EXIT_OK;
	if (st == KMS_INTERNAL || st == KMS_INVALID_ARGUMENT) {
		fprintf(cli->err, "%s: could not finish reading %s: ", cli->path, dir);
		cli_put_clean(cli->err, report->failure);
		fputc('\n', cli->err);
		return CLI_EXIT_USAGE;
	}
	return admin_audit_failed(cli, "%s: %s", dir, report->failure);
}

/* ---- tallies: name -> {"entries", "allowed", "denied"} ---- */

kms_status admin_audit_tally(json_t *tally, const char *name, bool denied)
{
	json_t *row = json_object_get(tally, name);
	if (!row) {
		row = json_pack("{s:I, s:I, s:I}", "entries", (json_int_t)0, "allowed",
		                (json_int_t)0, "denied", (json_int_t)0);
		KMS_ENSURE(row && json_object_set_new(tally, name, row) == 0, KMS_INTERNAL,
		           "out of memory");
	}
	const char *which[] = { "entries", denied ? "denied" : "allowed" };
	for (size_t i = 0; i < 2; i++) {
		json_t *n = json_object_get(row, which[i]);
		KMS_ENSURE(json_integer_set(n, json_integer_value(n) + 1) == 0, KMS_INTERNAL,
		           "out of memory");
	}
	return KMS_OK;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *admin_audit_tally_list(json_t *tally, const char *name_member)
{
	size_t n = json_object_size(tally), i = 0;
	const char **names = calloc(n ? n : 1, sizeof *names);
	json_t *list = json_array();
	const char *name;
	json_t *row;
	if (!names || !list)
		goto fail;
	json_object_foreach(tally, name, row)
		names[i++] = name;
	qsort(names, n, sizeof *names, compare_names);
	for (i = 0; i < n; i++) {
		json_t *out = json_deep_copy(json_object_get(tally, names[i]));
		if (!out || json_object_set_new(out, name_member, cli_json_str(names[i])) != 0 ||
		    json_array_append_new(list, out) != 0)
			goto fail;
	}
	free(names);
	return list;
fail:
	free(names);
	json_decref(list);
	return NULL;
}

/* ---- audit query ---- */

struct query {
	const char *principal;
	const char *access_key; /* NULL: any */
	struct admin_audit_window window;
	uint64_t entries, allowed, denied;
	json_t *keys, *dps, *purposes, *operations;
	char last_time[ADMIN_AUDIT_TIME_SIZE]; /* the last entry's, signed */
};

/* The names one entry touched, each once: a set per kind. */
struct touched {
	json_t *keys, *dps, *purposes;
};

static kms_status add_name(json_t *set, const char *name)
{
	if (!name || !name[0])
		return KMS_OK;
	KMS_ENSURE(json_object_set_new(set, name, json_true()) == 0, KMS_INTERNAL,
	           "out of memory");
	return KMS_OK;
}

/* dp and purpose of a context recorded as an object of strings (a value
 * cut for length is an object, and no pseudonym or purpose code is that
 * long; a digest or a note is a string: nothing to read). */
static kms_status add_context(struct touched *t, json_t *context)
{
	if (!json_is_object(context))
		return KMS_OK;
	KMS_GUARD(add_name(t->dps, json_string_value(json_object_get(context, "dp"))));
	return add_name(t->purposes, json_string_value(json_object_get(context, "purpose")));
}

static kms_status collect(struct touched *t, json_t *entry)
{
	size_t i;
	json_t *v;
	KMS_GUARD(add_name(t->keys, admin_audit_member(entry, "key_id")));
	json_array_foreach(json_object_get(entry, "batch_keys"), i, v)
		KMS_GUARD(add_name(t->keys, json_string_value(v)));
	KMS_GUARD(add_context(t, json_object_get(entry, "encryption_context")));
	json_array_foreach(json_object_get(entry, "items"), i, v)
		KMS_GUARD(add_context(t, json_array_get(v, 2)));
	KMS_GUARD(add_name(t->dps, admin_audit_member(entry, "data_principal")));
	json_t *consent = json_object_get(entry, "consent");
	KMS_GUARD(add_name(t->dps, admin_audit_member(consent, "dp")));
	return add_name(t->purposes, admin_audit_member(consent, "purpose"));
}

static kms_status tally_set(json_t *tally, json_t *set, bool denied)
{
	const char *name;
	json_t *v;
	json_object_foreach(set, name, v)
		KMS_GUARD(admin_audit_tally(tally, name, denied));
	return KMS_OK;
}

static kms_status query_visit(void *ctx, uint64_t index, json_t *entry)
{
	(void)index;
	struct query *q = ctx;
	char time[ADMIN_AUDIT_TIME_SIZE];
	if (entry_time(entry, time))
		memcpy(q->last_time, time, ADMIN_AUDIT_TIME_SIZE);
	if (strcmp(admin_audit_member(entry, "principal"), q->principal) != 0 ||
	    (q->access_key && strcmp(admin_audit_member(entry, "access_key_id"), q->access_key)) ||
	    !admin_audit_in_window(&q->window, entry))
		return KMS_OK;
	bool denied = admin_audit_entry_denied(entry);
	q->entries++;
	denied ? q->denied++ : q->allowed++;
	struct touched t = { json_object(), json_object(), json_object() };
	kms_status st = KMS_FAIL(KMS_INTERNAL, "out of memory");
	if (t.keys && t.dps && t.purposes && collect(&t, entry) == KMS_OK &&
	    tally_set(q->keys, t.keys, denied) == KMS_OK &&
	    tally_set(q->dps, t.dps, denied) == KMS_OK &&
	    tally_set(q->purposes, t.purposes, denied) == KMS_OK)
		st = admin_audit_tally(q->operations,
		                       admin_audit_member(entry, "operation")[0]
		                               ? admin_audit_member(entry, "operation")
		                               : "(none)",
		                       denied);
	json_decref(t.keys);
	json_decref(t.dps);
	json_decref(t.purposes);
	return st;
}

static int print_query_json(struct cli *cli, const struct query *q,
                            const struct admin_audit_source *src,
                            const tlog_verify_report *report)
{
	return cli_json_print(cli, json_pack(
		"{s:o, s:o, s:s, s:s, s:{s:b, s:o, s:o, s:I, s:o, s:o, s:b}, s:I, s:I, s:I, "
		"s:o, s:o, s:o, s:o}",
		"principal", cli_json_str(q->principal),
		"access_key_id", q->access_key ? cli_json_str(q->access_key) : json_null(),
		"since", q->window.since, "until", q->window.until,
		"log", "verified", 1, "dir", cli_json_str(src->dir),
		"origin", cli_json_str(report->origin),
		"checkpoint_size", (json_int_t)report->tree_size,
		"root", admin_audit_json_hex(report->root),
		"verifier_key", cli_json_str(src->vkey), "key_from_kmsd", src->key_from_kmsd,
		"entries", (json_int_t)q->entries, "allowed", (json_int_t)q->allowed,
		"denied", (json_int_t)q->denied,
		"keys", admin_audit_tally_list(q->keys, "key_id"),
		"data_principals", admin_audit_tally_list(q->dps, "dp"),
		"purposes", admin_audit_tally_list(q->purposes, "purpose"),
		"operations", admin_audit_tally_list(q->operations, "operation")));
}

/* One table of a tally: NAME ENTRIES ALLOWED DENIED. */
static int print_tally(struct cli *cli, const char *title, json_t *tally)
{
	const char *headers[] = { title, "ENTRIES", "ALLOWED", "DENIED" };
	struct cli_table t;
	const char *name;
	json_t *row;
	if (!cli_table_init(&t, 4, headers))
		return cli_out_of_memory(cli);
	json_t *list = admin_audit_tally_list(tally, "name");
	bool ok = list != NULL;
	size_t i;
	json_array_foreach(list, i, row) {
		char n[3][24];
		const char *which[] = { "entries", "allowed", "denied" };
		for (size_t c = 0; c < 3; c++)
			snprintf(n[c], sizeof n[c], "%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(row, which[c])));
		name = admin_audit_member(row, "name");
		const char *cells[] = { name, n[0], n[1], n[2] };
		ok = ok && cli_table_add(&t, cells);
	}
	json_decref(list);
	if (!ok) {
		cli_table_free(&t);
		return cli_out_of_memory(cli);
	}
	fputc('\n', cli->out);
	if (json_object_size(tally) == 0)
		fprintf(cli->out, "%s: none\n", title);
	else
		cli_table_print(&t, cli->out);
	cli_table_free(&t);
	return CLI_EXIT_OK;
}

static int print_query_text(struct cli *cli, const struct query *q,
                            const struct admin_audit_source *src,
                            const tlog_verify_report *report)
{
	char root[ADMIN_AUDIT_HEX_SIZE];
	cli_field(cli->out, "principal", q->principal);
	cli_field(cli->out, "access key", q->access_key ? q->access_key : "(any)");
	cli_field_fmt(cli->out, "window", "%s to %s (from, inclusive; to, exclusive)",
	              q->window.since, q->window.until);
	cli_field_fmt(cli->out, "verified", "every entry of %s against the signed checkpoint of "
	              "size %" PRIu64, src->dir, report->tree_size);
	cli_field(cli->out, "origin", report->origin);
	cli_field(cli->out, "root", admin_audit_hex(report->root, root));
	cli_field(cli->out, "key", src->vkey);
	cli_field_fmt(cli->out, "entries", "%" PRIu64 " (%" PRIu64 " allowed, %" PRIu64
	              " denied)", q->entries, q->allowed, q->denied);
	int code = print_tally(cli, "KEY", q->keys);
	if (code == CLI_EXIT_OK)
		code = print_tally(cli, "DATA PRINCIPAL", q->dps);
	if (code == CLI_EXIT_OK)
		code = print_tally(cli, "PURPOSE", q->purposes);
	if (code == CLI_EXIT_OK)
		code = print_tally(cli, "OPERATION", q->operations);
	return code;
}

/* Health and the checkpoint, when the log or its key must come from kmsd. */
static int ask_kmsd(struct cli *cli, kms_health *health, kms_checkpoint *cp)
{
	kms_client *client = NULL;
	kms_error err;
	int code = cli_connect(cli, &client);
	if (code != CLI_EXIT_OK)
		return code;
	if (kms_health_check(client, health, &err) != KMS_OK ||
	    kms_get_checkpoint(client, cp, &err) != KMS_OK)
		code = cli_report(cli, &err);
	kms_client_close(client);
	return code;
}

static int run_query(struct cli *cli, struct query *q, const char *log_dir,
                     const struct admin_audit_key *vk)
{
	struct admin_audit_source src;
	kms_health health;
	kms_checkpoint cp;
	tlog_verify_report *report = NULL;
	int code = CLI_EXIT_OK;
	memset(&health, 0, sizeof health);
	memset(&cp, 0, sizeof cp);
	if (!log_dir || !vk->given)
		code = ask_kmsd(cli, &health, &cp);
	if (code == CLI_EXIT_OK)
		code = admin_audit_source_resolve(cli, log_dir, vk, &health, &cp, &src);
	if (code == CLI_EXIT_OK && !(report = calloc(1, sizeof *report)))
		code = cli_out_of_memory(cli);
	if (code == CLI_EXIT_OK)
		code = admin_audit_scan(cli, src.dir, src.vkey, query_visit, q, report);
	if (code == CLI_EXIT_OK && strcmp(q->last_time, q->window.until) < 0)
		fprintf(cli->err, "%s: note: the signed checkpoint (size %" PRIu64 ") ends with an "
		        "entry of %s, before --until: entries after it are not counted until a "
		        "later checkpoint covers them\n", cli->path, report->tree_size,
		        q->last_time[0] ? q->last_time : "(none)");
	if (code == CLI_EXIT_OK)
		code = cli->json ? print_query_json(cli, q, &src, report)
		                 : print_query_text(cli, q, &src, report);
	free(report);
	kms_health_free(&health);
	kms_checkpoint_free(&cp);
	return code;
}

int admin_audit_query(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "principal", required_argument, NULL, AUDIT_OPT_PRINCIPAL },
		{ "access-key", required_argument, NULL, AUDIT_OPT_ACCESS_KEY },
		{ "since", required_argument, NULL, AUDIT_OPT_SINCE },
		{ "until", required_argument, NULL, AUDIT_OPT_UNTIL },
		{ "log", required_argument, NULL, AUDIT_OPT_LOG },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct admin_audit_key vk = { 0 };
	struct query q;
	const char *since = NULL, *until = NULL, *log_dir = NULL;
	int opt, code;
	memset(&q, 0, sizeof q);
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		switch (opt) {
		case AUDIT_OPT_PRINCIPAL: q.principal = optarg; break;
		case AUDIT_OPT_ACCESS_KEY: q.access_key = optarg; break;
		case AUDIT_OPT_SINCE: since = optarg; break;
		case AUDIT_OPT_UNTIL: until = optarg; break;
		case AUDIT_OPT_LOG: log_dir = optarg; break;
		default: return cli_usage_error(cli, "option not handled");
		}
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	if (!q.principal || !q.principal[0])
		return cli_usage_error(cli, "give --principal NAME: whose use to find");
	if ((code = admin_audit_window_parse(cli, since, until, &q.window)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	q.keys = json_object();
	q.dps = json_object();
	q.purposes = json_object();
	q.operations = json_object();
	if (!q.keys || !q.dps || !q.purposes || !q.operations)
		code = cli_out_of_memory(cli);
	else
		code = run_query(cli, &q, log_dir, &vk);
	json_decref(q.keys);
	json_decref(q.dps);
	json_decref(q.purposes);
	json_decref(q.operations);
	return code;
}
