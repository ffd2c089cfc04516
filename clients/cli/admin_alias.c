/*
 * admin_alias.c: kms-admin alias ... (create, update, delete, list).
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

enum {
	OPT_KEY = CLI_OPT_COMMAND,
};

/* create and update differ only in the call. */
static int alias_point(struct cli *cli, int argc, char **argv, bool create)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 2, 2, &client);
	if (code != CLI_PROCEED)
		return code;
	const char *alias = argv[optind], *key_id = argv[optind + 1];
	kms_status st = create ? kms_create_alias(client, alias, key_id, &err)
	                       : kms_update_alias(client, alias, key_id, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o}", "alias_name",
		                                     cli_json_str(alias), "target_key_id",
		                                     cli_json_str(key_id)));
	cli_put_clean(cli->out, alias);
	fputs(" -> ", cli->out);
	cli_put_clean(cli->out, key_id);
	fputc('\n', cli->out);
	return CLI_EXIT_OK;
}

static int alias_create(struct cli *cli, int argc, char **argv)
{
	return alias_point(cli, argc, argv, true);
}

static int alias_update(struct cli *cli, int argc, char **argv)
{
	return alias_point(cli, argc, argv, false);
}

static int alias_delete(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_delete_alias(client, argv[optind], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:b}", "alias_name",
		                                     cli_json_str(argv[optind]), "deleted", 1));
	cli_put_clean(cli->out, argv[optind]);
	fputs(": deleted\n", cli->out);
	return CLI_EXIT_OK;
}

static kms_status read_alias_page(kms_client *client, const void *key_id, uint32_t limit,
                                  const char *page_token, struct admin_page *page,
                                  kms_error *err)
{
	kms_alias_list list;
	kms_status st = kms_list_aliases(client, key_id, limit, page_token, &list, err);
	*page = (struct admin_page){ list.aliases, list.n_aliases, list.next_page_token };
	return st;
}

static void alias_free(void *item)
{
	kms_alias *alias = item;
	free(alias->alias_name);
	free(alias->target_key_id);
}

static const struct admin_list_kind alias_list_kind = {
	.what = "aliases",
	.item_size = sizeof(kms_alias),
	.read_page = read_alias_page,
	.item_free = alias_free,
};

static int alias_list(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		ADMIN_LIST_OPTIONS, CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *key_id = NULL;
	struct admin_pages pages = { 0 };
	struct admin_gathered gathered = { 0 };
	kms_client *client = NULL;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_KEY)
			key_id = optarg;
		else if ((code = admin_list_option(cli, opt, &pages)) != CLI_PROCEED)
			return code;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_list_read(cli, client, &alias_list_kind, key_id, &pages, &gathered)) !=
	    CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		code = cli_json_print(cli, admin_json_aliases(gathered.items, gathered.n,
		                                              pages.token));
	} else {
		admin_print_aliases(cli->out, gathered.items, gathered.n);
		admin_pages_hint(cli, &pages, &alias_list_kind);
	}
out:
	admin_gathered_free(&gathered, &alias_list_kind);
	free(pages.token);
	kms_client_close(client);
	return code;
}

const struct cli_command admin_alias_commands[] = {
	{ .name = "create", .run = alias_create, .args = "alias/NAME KEY",
	  .help = "Point a new alias at a key id" },
	{ .name = "update", .run = alias_update, .args = "alias/NAME KEY",
	  .help = "Point an alias at another key id" },
	{ .name = "delete", .run = alias_delete, .args = "alias/NAME",
	  .help = "Delete an alias (the key stays)" },
	{ .name = "list", .run = alias_list, .args = "[--key KEY] [--limit N] [--all]",
	  .help = "List aliases, of one key with --key",
	  .details = "  --key KEY             only the aliases of this key\n"
	             "  --limit N             aliases per page, 1.." CLI_STR(KMS_LIST_LIMIT_MAX) "\n"
	             "  --all                 follow the pages to the end\n"
	             "  --page-token T        start at this page\n" },
	{ 0 },
};
