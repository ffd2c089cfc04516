/*
 * admin_alias.c: kms-admin alias ... (create, update, delete, list).
 */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#define LIST_PAGES_MAX 100000

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_LIMIT,
	OPT_ALL,
	OPT_PAGE_TOKEN,
};

/* create and update differ only in the call. */
static int alias_point(struct cli *cli, int argc, char **argv, bool create)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_args(cli, argc, argv, 2, 2);
	if (code != CLI_PROCEED)
		return code;
	code = CLI_EXIT_OK;
	const char *alias = argv[optind], *key_id = argv[optind + 1];
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
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
	int code = cli_parse_args(cli, argc, argv, 1, 1);
	if (code != CLI_PROCEED)
		return code;
	code = CLI_EXIT_OK;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
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

static int alias_list(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "page-token", required_argument, NULL, OPT_PAGE_TOKEN },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *key_id = NULL, *page_token = NULL;
	uint32_t limit = 0;
	bool all = false;
	kms_alias *aliases = NULL;
	size_t n = 0, cap = 0;
	char *token = NULL;
	kms_client *client = NULL;
	kms_error err;
	int opt, code = CLI_EXIT_OK;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_KEY:
			key_id = optarg;
			break;
		case OPT_LIMIT:
			if (!cli_parse_u32(optarg, 1, 1000, &limit))
				return cli_usage_error(cli, "--limit takes 1..1000");
			break;
		case OPT_ALL:
			all = true;
			break;
		case OPT_PAGE_TOKEN:
			page_token = optarg;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	if (opt != CLI_GETOPT_DONE)
		return cli_getopt_exit(opt);
	if (!cli_positionals(cli, argc, argv, 0, 0))
		return CLI_EXIT_USAGE;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	for (size_t page = 0;; page++) {
		kms_alias_list list;
		if (kms_list_aliases(client, key_id, limit, page_token, &list, &err) != KMS_OK) {
			code = cli_report(cli, &err);
			goto out;
		}
		if (n + list.n_aliases > cap) {
			size_t grown_cap = (n + list.n_aliases) * 2;
			kms_alias *grown = reallocarray(aliases, grown_cap, sizeof *aliases);
			if (!grown) {
				kms_alias_list_free(&list);
				fprintf(cli->err, "%s: out of memory\n", cli->prog);
				code = CLI_EXIT_UNREACHABLE;
				goto out;
			}
			aliases = grown;
			cap = grown_cap;
		}
		if (list.n_aliases)
			memcpy(aliases + n, list.aliases, list.n_aliases * sizeof *aliases);
		n += list.n_aliases;
		list.n_aliases = 0;
		bool same = page_token && strcmp(page_token, list.next_page_token) == 0;
		free(token);
		token = list.next_page_token;
		list.next_page_token = NULL;
		kms_alias_list_free(&list);
		if (!all || !token[0])
			break;
		if (same || page >= LIST_PAGES_MAX) {
			fprintf(cli->err, "%s: kmsd keeps answering with more pages; stopped\n",
			        cli->prog);
			code = CLI_EXIT_UNREACHABLE;
			goto out;
		}
		page_token = token;
	}
	if (cli->json) {
		code = cli_json_print(cli, admin_json_aliases(aliases, n, token));
	} else {
		admin_print_aliases(cli->out, aliases, n);
		if (token && token[0]) {
			fprintf(cli->err, "(more aliases: use --all, or --page-token ");
			cli_put_clean(cli->err, token);
			fprintf(cli->err, ")\n");
		}
	}
out:
	for (size_t i = 0; i < n; i++) {
		free(aliases[i].alias_name);
		free(aliases[i].target_key_id);
	}
	free(aliases);
	free(token);
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
	             "  --limit N             aliases per page, 1..1000\n"
	             "  --all                 follow the pages to the end\n"
	             "  --page-token T        start at this page\n" },
	{ 0 },
};
