/*
 * admin_grant.c: kms-admin grant ... (create, list, retire, revoke).
 * docs/authorization.md, "Grants".
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

#include <kms/principals.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_GRANTEE,
	OPT_OP,
	OPT_CONTEXT,
};

#define GRANT_OPS_MAX 16

static json_t *json_grant(const kms_grant *g)
{
	json_t *ops = json_array(), *context = json_object();
	bool ok = ops && context;
	for (size_t i = 0; ok && i < g->n_operations; i++)
		ok = json_array_append_new(ops, cli_json_str(g->operations[i])) == 0;
	for (size_t i = 0; ok && i < g->n_context; i++)
		ok = json_object_set_new(context, g->context[i].key,
		                         cli_json_str(g->context[i].value)) == 0;
	if (!ok) {
		json_decref(ops);
		json_decref(context);
		return NULL;
	}
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:I, s:I}", "grant_id",
	                 cli_json_str(g->grant_id), "key_id", cli_json_str(g->key_id), "grantee",
	                 cli_json_str(g->grantee), "operations", ops, "context", context,
	                 "creator", cli_json_str(g->creator), "state",
	                 kms_grant_state_name(g->state), "created_at", (json_int_t)g->created_at,
	                 "ended_at", (json_int_t)g->ended_at);
}

/* "a,b" and "k=v,k2=v2" for a table cell; NULL when out of memory. */
static char *joined(const kms_grant *g, bool context)
{
	size_t len = 2; /* "-" when empty, and the NUL */
	size_t n = context ? g->n_context : g->n_operations;
	for (size_t i = 0; i < n; i++)
		len += context ? strlen(g->context[i].key) + strlen(g->context[i].value) + 2
		               : strlen(g->operations[i]) + 1;
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, ",");
		if (context) {
			strcat(s, g->context[i].key);
			strcat(s, "=");
			strcat(s, g->context[i].value);
		} else {
			strcat(s, g->operations[i]);
		}
	}
	if (!n)
		strcat(s, "-");
	return s;
}

static void print_grants(FILE *to, const kms_grant *gs, size_t n)
{
	static const char *const headers[] = { "GRANT ID", "KEY ID", "GRANTEE", "OPERATIONS",
		                               "CONTEXT", "STATE", "CREATED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 7, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char created[CLI_TIME_MAX];
		char *ops = joined(&gs[i], false), *context = joined(&gs[i], true);
		ok = ops && context;
		if (ok) {
			const char *cells[] = { gs[i].grant_id, gs[i].key_id, gs[i].grantee, ops,
				                context, kms_grant_state_name(gs[i].state),
				                cli_time(gs[i].created_at, created) };
			ok = cli_table_add(&t, cells);
		}
		free(ops);
		free(context);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static int grant_create(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "grantee", required_argument, NULL, OPT_GRANTEE },
		{ "op", required_argument, NULL, OPT_OP },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	kms_create_grant_params params = { 0 };
	const char *ops[GRANT_OPS_MAX];
	struct cli_pairs context = { 0 };
	const char *why;
	int opt = CLI_GETOPT_DONE, code = CLI_EXIT_OK;
	while (code == CLI_EXIT_OK && (opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY:
			params.key_id = optarg;
			break;
		case OPT_GRANTEE:
			params.grantee = optarg;
			break;
		case OPT_OP:
			if (params.n_operations == GRANT_OPS_MAX)
				code = cli_usage_error(cli, "--op: at most %d operations",
				                       GRANT_OPS_MAX);
			else
				ops[params.n_operations++] = optarg;
			break;
		case OPT_CONTEXT:
			if ((why = cli_pairs_add(&context, optarg)) != NULL)
				code = cli_usage_error(cli, "--context %s: %s", optarg, why);
			break;
		default:
			code = cli_usage_error(cli, "option not handled");
		}
	}
	if (code != CLI_EXIT_OK || (code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		goto out;
	if (!params.key_id || !params.grantee || !params.n_operations) {
		code = cli_usage_error(cli, "give --key KEY, --grantee PRINCIPAL and at least one "
		                       "--op OPERATION");
		goto out;
	}
	params.operations = ops;
	params.context = context.pairs;
	params.n_context = context.n;
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	kms_grant g;
	kms_error err;
	kms_status st = kms_create_grant(client, &params, &g, &err);
	kms_client_close(client);
	if (st != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	if (cli->json) {
		code = cli_json_print(cli, json_grant(&g));
	} else {
		print_grants(cli->out, &g, 1);
		code = CLI_EXIT_OK;
	}
	kms_grant_free(&g);
out:
	cli_pairs_free(&context);
	return code;
}

struct grant_filter {
	const char *key_id;
	const char *grantee;
};

static kms_status read_grant_page(kms_client *client, const void *arg, uint32_t limit,
                                  const char *page_token, struct admin_page *page,
                                  kms_error *err)
{
	const struct grant_filter *f = arg;
	kms_grant_list list;
	kms_status st = kms_list_grants(client, f->key_id, f->grantee, limit, page_token, &list,
	                                err);
	*page = (struct admin_page){ list.grants, list.n_grants, list.next_page_token };
	return st;
}

static void grant_item_free(void *item)
{
	kms_grant_free(item);
}

static const struct admin_list_kind grant_list_kind = {
	.what = "grants",
	.item_size = sizeof(kms_grant),
	.read_page = read_grant_page,
	.item_free = grant_item_free,
};

static int grant_list(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "grantee", required_argument, NULL, OPT_GRANTEE },
		ADMIN_LIST_OPTIONS, CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct grant_filter filter = { 0 };
	struct admin_pages pages = { 0 };
	struct admin_gathered gathered = { 0 };
	kms_client *client = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_KEY)
			filter.key_id = optarg;
		else if (opt == OPT_GRANTEE)
			filter.grantee = optarg;
		else if ((code = admin_list_option(cli, opt, &pages)) != CLI_PROCEED)
			return code;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	if (!filter.key_id && !filter.grantee)
		return cli_usage_error(cli, "give --key KEY, --grantee PRINCIPAL or both");
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_list_read(cli, client, &grant_list_kind, &filter, &pages, &gathered)) !=
	    CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		json_t *array = json_array();
		for (size_t i = 0; array && i < gathered.n; i++) {
			json_t *item = json_grant((kms_grant *)gathered.items + i);
			if (!item || json_array_append_new(array, item) != 0) {
				json_decref(array);
				array = NULL;
			}
		}
		code = cli_json_print(cli, array ? json_pack("{s:o, s:o}", "grants", array,
		                                             "next_page_token",
		                                             cli_json_str(pages.token ? pages.token : ""))
		                                 : NULL);
	} else {
		print_grants(cli->out, gathered.items, gathered.n);
		admin_pages_hint(cli, &pages, &grant_list_kind);
	}
out:
	admin_gathered_free(&gathered, &grant_list_kind);
	free(pages.token);
	kms_client_close(client);
	return code;
}

static int grant_end(struct cli *cli, int argc, char **argv, bool retire)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = retire ? kms_retire_grant(client, argv[optind], &err)
	                       : kms_revoke_grant(client, argv[optind], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	const char *done = retire ? "retired" : "revoked";
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:s}", "grant_id",
		                                     cli_json_str(argv[optind]), "result", done));
	cli_put_clean(cli->out, argv[optind]);
	fprintf(cli->out, ": %s\n", done);
	return CLI_EXIT_OK;
}

static int grant_retire(struct cli *cli, int argc, char **argv)
{
	return grant_end(cli, argc, argv, true);
}

static int grant_revoke(struct cli *cli, int argc, char **argv)
{
	return grant_end(cli, argc, argv, false);
}

const struct cli_command admin_grant_commands[] = {
	{ .name = "create", .run = grant_create,
	  .args = "--key KEY --grantee PRINCIPAL --op OP... [--context k=v]...",
	  .help = "Let a principal use one key for some data-plane operations",
	  .details = "  --key KEY             a key id or alias/NAME (not pending deletion)\n"
	             "  --grantee PRINCIPAL   who may use it\n"
	             "  --op OP               encrypt, decrypt, re_encrypt, generate_data_key,\n"
	             "                        generate_data_key_without_plaintext, batch_encrypt,\n"
	             "                        batch_decrypt, batch_generate_data_key (AES_256\n"
	             "                        keys); sign, verify, get_public_key (ED25519,\n"
	             "                        ECC_P256); generate_mac, verify_mac, pseudonymize\n"
	             "                        (HMAC_SHA256); repeat\n"
	             "  --context k=v         only when the encryption context holds this pair;\n"
	             "                        repeat for more\n" },
	{ .name = "list", .run = grant_list,
	  .args = "[--key KEY] [--grantee PRINCIPAL] [--limit N] [--all]",
	  .help = "List the grants on a key, to a principal, or both (every state)",
	  .details = "  --key KEY             the grants on this key\n"
	             "  --grantee PRINCIPAL   the grants to this principal\n"
	             "  --limit N             grants per page, 1.." CLI_STR(KMS_LIST_LIMIT_MAX) "\n"
	             "  --all                 follow the pages to the end\n"
	             "  --page-token T        start at this page\n" },
	{ .name = "retire", .run = grant_retire, .args = "GRANT_ID",
	  .help = "Retire a grant (its grantee, or an admin)" },
	{ .name = "revoke", .run = grant_revoke, .args = "GRANT_ID",
	  .help = "Revoke a grant (an admin)" },
	{ 0 },
};
