/*
 * admin_list.c: following kmsd's list pages (key list, alias list) and
 * gathering what they hold.
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

/* Appends n items of size bytes (a bytewise move: the caller's page gives
 * them up). False, with nothing changed, when out of memory. */
static bool gather(struct admin_gathered *g, const void *items, size_t n, size_t size)
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

/* Takes the next_page_token of the page just read (owning it). Returns
 * CLI_PROCEED to read another page (with page_token), CLI_EXIT_OK when
 * done, or CLI_EXIT_UNREACHABLE, said, when kmsd keeps answering with
 * more pages. */
static int pages_next(struct cli *cli, struct admin_pages *pages, char *next_page_token)
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

int admin_list_read(struct cli *cli, kms_client *client, const struct admin_list_kind *kind,
                    const void *arg, struct admin_pages *pages, struct admin_gathered *g)
{
	int code;
	do {
		struct admin_page page = { 0 };
		kms_error err;
		if (kind->read_page(client, arg, pages->limit, pages->page_token, &page, &err) !=
		    KMS_OK)
			return cli_report(cli, &err);
		bool moved = gather(g, page.items, page.n, kind->item_size);
		for (size_t i = 0; !moved && i < page.n; i++)
			kind->item_free((unsigned char *)page.items + i * kind->item_size);
		free(page.items); /* emptied: its items moved over, or freed */
		if (!moved) {
			free(page.next_page_token);
			return cli_out_of_memory(cli);
		}
		code = pages_next(cli, pages, page.next_page_token);
	} while (code == CLI_PROCEED);
	return code;
}

void admin_gathered_free(struct admin_gathered *g, const struct admin_list_kind *kind)
{
	for (size_t i = 0; i < g->n; i++)
		kind->item_free((unsigned char *)g->items + i * kind->item_size);
	free(g->items);
	memset(g, 0, sizeof *g);
}

void admin_pages_hint(struct cli *cli, const struct admin_pages *pages,
                      const struct admin_list_kind *kind)
{
	if (!pages->token || !pages->token[0])
		return;
	fprintf(cli->err, "(more %s: use --all, or --page-token ", kind->what);
	cli_put_clean(cli->err, pages->token);
	fprintf(cli->err, ")\n");
}
