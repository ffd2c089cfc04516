/*
 * admin_dp.c: kms-admin data-principal erase | hold | due, and key
 * retention set (docs/data-principals.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <kms/data_principals.h>

#include "clients/cli/admin.h"

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_DP,
	OPT_BASIS,
	OPT_HOLD,
	OPT_LIFT,
	OPT_PURPOSE,
	OPT_DAYS,
	OPT_LIMIT,
	OPT_PAGE_TOKEN,
};

typedef struct dp_args {
	const char *key, *dp, *basis, *hold, *purpose, *page_token;
	bool lift, has_days;
	uint32_t days, limit;
} dp_args;

/* Reads the options of every command here; *code is set on a bad one. */
static int dp_options(struct cli *cli, int argc, char **argv, const struct option *opts,
                      dp_args *a, int min, int max)
{
	int opt, code = CLI_EXIT_OK;
	while (code == CLI_EXIT_OK && (opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY: a->key = optarg; break;
		case OPT_DP: a->dp = optarg; break;
		case OPT_BASIS: a->basis = optarg; break;
		case OPT_HOLD: a->hold = optarg; break;
		case OPT_LIFT: a->lift = true; break;
		case OPT_PURPOSE: a->purpose = optarg; break;
		case OPT_PAGE_TOKEN: a->page_token = optarg; break;
		case OPT_DAYS:
			a->has_days = true;
			if (!cli_parse_u32(optarg, 0, 36500, &a->days))
				code = cli_usage_error(cli, "--days takes 0..36500 (0 removes it)");
			break;
		case OPT_LIMIT:
			if (!cli_parse_u32(optarg, 1, KMS_LIST_LIMIT_MAX, &a->limit))
				code = cli_usage_error(cli, "--limit takes 1..%d", KMS_LIST_LIMIT_MAX);
			break;
		default:
			code = cli_usage_error(cli, "option not handled");
		}
	}
	if (code != CLI_EXIT_OK)
		return code;
	return cli_getopt_end(cli, opt, argc, argv, min, max);
}

static int dp_erase(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "dp", required_argument, NULL, OPT_DP },
		{ "basis", required_argument, NULL, OPT_BASIS },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	dp_args a = { 0 };
	kms_client *client;
	kms_error err;
	int64_t erased_at = 0;
	int code = dp_options(cli, argc, argv, opts, &a, 0, 0);
	if (code != CLI_PROCEED)
		return code;
	if (!a.key || !a.dp || !a.basis)
		return cli_usage_error(cli, "give --key KEY --dp PSEUDONYM --basis TEXT");
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_erase_data_principal(client, a.key, a.dp, a.basis, &erased_at, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o, s:I}", "key_id", cli_json_str(a.key),
		                                     "data_principal", cli_json_str(a.dp),
		                                     "erased_at", (json_int_t)erased_at));
	char when[CLI_TIME_MAX];
	cli_field(cli->out, "key", a.key);
	cli_field(cli->out, "data principal", a.dp);
	cli_field(cli->out, "erased at", cli_time(erased_at, when));
	fprintf(cli->out, "its sub-key is destroyed: every blob for it under this key is "
	        "unreadable from now on\n");
	return CLI_EXIT_OK;
}

static int dp_hold(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "dp", required_argument, NULL, OPT_DP },
		{ "hold", required_argument, NULL, OPT_HOLD },
		{ "lift", no_argument, NULL, OPT_LIFT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	dp_args a = { 0 };
	kms_client *client;
	kms_error err;
	int code = dp_options(cli, argc, argv, opts, &a, 0, 0);
	if (code != CLI_PROCEED)
		return code;
	if (!a.key || !a.dp || (!a.hold == !a.lift) || (a.hold && !a.hold[0]))
		return cli_usage_error(cli, "give --key KEY --dp PSEUDONYM and either --hold STATUTE "
		                       "or --lift");
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_set_data_principal_hold(client, a.key, a.dp, a.lift ? "" : a.hold,
	                                            &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o, s:o}", "key_id", cli_json_str(a.key),
		                                     "data_principal", cli_json_str(a.dp), "hold",
		                                     cli_json_str(a.lift ? "" : a.hold)));
	cli_field(cli->out, "key", a.key);
	cli_field(cli->out, "data principal", a.dp);
	cli_field(cli->out, "legal hold", a.lift ? "(lifted)" : a.hold);
	return CLI_EXIT_OK;
}

static json_t *due_json(const kms_due_erasure_list *l)
{
	json_t *items = json_array();
	for (size_t i = 0; items && i < l->n_erasures; i++) {
		const kms_due_erasure *d = &l->erasures[i];
		json_t *o = json_pack("{s:o, s:o, s:o, s:I, s:I, s:I}", "key_id",
		                      cli_json_str(d->key_id), "data_principal",
		                      cli_json_str(d->data_principal), "purpose",
		                      cli_json_str(d->purpose), "retention_ends_at",
		                      (json_int_t)d->retention_ends_at, "notice_at",
		                      (json_int_t)d->notice_at, "erase_at", (json_int_t)d->erase_at);
		if (!o || json_array_append_new(items, o) != 0) {
			json_decref(items);
			return NULL;
		}
	}
	if (!items)
		return NULL;
	return json_pack("{s:o, s:o}", "erasures", items, "next_page_token",
	                 cli_json_str(l->next_page_token));
}

static void print_due(FILE *to, const kms_due_erasure_list *l)
{
	static const char *const headers[] = { "KEY", "DATA PRINCIPAL", "PURPOSE",
		                               "RETENTION ENDS", "NOTICED", "ERASE AT" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 6, headers);
	for (size_t i = 0; ok && i < l->n_erasures; i++) {
		const kms_due_erasure *d = &l->erasures[i];
		char ends[CLI_TIME_MAX], noticed[CLI_TIME_MAX], erase[CLI_TIME_MAX];
		const char *cells[] = { d->key_id, d->data_principal, d->purpose[0] ? d->purpose : "-",
			                cli_time(d->retention_ends_at, ends),
			                cli_time(d->notice_at, noticed), cli_time(d->erase_at, erase) };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static int dp_due(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "page-token", required_argument, NULL, OPT_PAGE_TOKEN },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	dp_args a = { 0 };
	kms_client *client;
	kms_error err;
	kms_due_erasure_list l;
	int code = dp_options(cli, argc, argv, opts, &a, 0, 0);
	if (code != CLI_PROCEED)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_list_due_erasures(client, a.limit, a.page_token, &l, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		code = cli_json_print(cli, due_json(&l));
	} else {
		print_due(cli->out, &l);
		if (l.next_page_token[0]) {
			/* kmsd's text: cleaned before a terminal sees it. */
			fputs("more: --page-token ", cli->out);
			cli_put_clean(cli->out, l.next_page_token);
			fputc('\n', cli->out);
		}
		code = CLI_EXIT_OK;
	}
	kms_due_erasure_list_free(&l);
	return code;
}

static int retention_set(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "purpose", required_argument, NULL, OPT_PURPOSE },
		{ "days", required_argument, NULL, OPT_DAYS },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	dp_args a = { 0 };
	kms_client *client;
	kms_error err;
	int code = dp_options(cli, argc, argv, opts, &a, 1, 1);
	if (code != CLI_PROCEED)
		return code;
	const char *key = argv[optind];
	if (!a.purpose || !a.has_days)
		return cli_usage_error(cli, "give --purpose CODE --days N (0 removes it)");
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_set_retention(client, key, a.purpose, a.days, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o, s:I}", "key_id", cli_json_str(key),
		                                     "purpose", cli_json_str(a.purpose), "days",
		                                     (json_int_t)a.days));
	cli_field(cli->out, "key", key);
	cli_field(cli->out, "purpose", a.purpose);
	cli_field_fmt(cli->out, "retention days", "%" PRIu32 "%s", a.days,
	              a.days ? "" : " (removed)");
	return CLI_EXIT_OK;
}

const struct cli_command admin_retention_commands[] = {
	{ .name = "set", .run = retention_set, .args = "KEY --purpose CODE --days N",
	  .help = "Erase sub-keys first used for a purpose N days after their creation",
	  .details = "  --purpose CODE        the purpose code in the context (e.g. 101)\n"
	             "  --days N              1..36500; 0 removes the retention. kmsd audits\n"
	             "                        pre_erasure 48 h before the end and erases then\n" },
	{ 0 },
};

const struct cli_command admin_dp_commands[] = {
	{ .name = "erase", .run = dp_erase, .args = "--key KEY --dp PSEUDONYM --basis TEXT",
	  .help = "Destroy a data principal's sub-key now (crypto-shredding; audited)",
	  .details = "  --key KEY             a per-data-principal key (id or alias/NAME)\n"
	             "  --dp PSEUDONYM        the data principal's pseudonym (kp_...)\n"
	             "  --basis TEXT          the legal basis, recorded in the audit log\n"
	             "  Refused while a legal hold is placed. Final: later uses fail.\n" },
	{ .name = "hold", .run = dp_hold,
	  .args = "--key KEY --dp PSEUDONYM (--hold STATUTE | --lift)",
	  .help = "Place or lift a legal hold: a held sub-key is not erased",
	  .details = "  --hold STATUTE        the statute that requires keeping it\n"
	             "  --lift                lift the hold\n" },
	{ .name = "due", .run = dp_due, .args = "[--limit N] [--page-token T]",
	  .help = "List sub-keys noticed for erasure by retention (pre_erasure given)" },
	{ 0 },
};
