/*
 * admin_list.c: following kmsd's list pages (key list, alias list) and
 * gathering what they hold.
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

bool admin_gather(struct admin_gathered *g, const void *items, size_t n, size_t size)
{
	if (n == 0)
		return true;
	if (g->n + n > g->cap) {
		size_t grown_cap = (g->n + n) * 2;
		void *grown = reallocarray(g->items, grown_cap, size);
		if (!grown)
			return false;
		g->items = grown;
		g->cap = grown_cap;
	}
	memcpy((unsigned char *)g->items + g->n * size, items, n * size);
	g->n += n;
	return true;
}

int admin_list_option(struct cli *cli, int opt, struct admin_pages *pages)
{
	switch (opt) {
	case ADMIN_OPT_LIMIT:
		if (!cli_parse_u32(optarg, 1, KMS_LIST_LIMIT_MAX, &pages->limit))
			return cli_usage_error(cli, "--limit takes 1..%d", KMS_LIST_LIMIT_MAX);
		return CLI_PROCEED;
	case ADMIN_OPT_ALL:
		pages->all = true;
		return CLI_PROCEED;
	case ADMIN_OPT_PAGE_TOKEN:
		pages->page_token = optarg;
		return CLI_PROCEED;
	default:
		return cli_usage_error(cli, "option not handled");
	}
}

int admin_pages_next(struct cli *cli, struct admin_pages *pages, char *next_page_token)
{
	/* The token just asked with, again: kmsd would answer forever. */
	bool same = pages->page_token && strcmp(pages->page_token, next_page_token) == 0;
	free(pages->token);
	pages->token = next_page_token;
	if (!pages->all || !pages->token[0])
		return CLI_EXIT_OK;
	if (same || pages->page >= ADMIN_LIST_PAGES_MAX) {
		fprintf(cli->err, "%s: kmsd keeps answering with more pages; stopped\n",
		        cli->prog);
		return CLI_EXIT_UNREACHABLE;
	}
	pages->page++;
	pages->page_token = pages->token;
	return CLI_PROCEED;
}

void admin_pages_hint(struct cli *cli, const struct admin_pages *pages, const char *what)
{
	if (!pages->token || !pages->token[0])
		return;
	fprintf(cli->err, "(more %s: use --all, or --page-token ", what);
	cli_put_clean(cli->err, pages->token);
	fprintf(cli->err, ")\n");
}
