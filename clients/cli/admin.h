/*
 * admin.h: kms-admin's command families (one file each) and its output
 * formatting, shared by the commands and the tests.
 */
#ifndef KMS_ADMIN_H
#define KMS_ADMIN_H

#include "clients/cli/cli.h"

#define ADMIN_PROG "kms-admin"
#define ADMIN_ABOUT \
	"Manage kms keys, aliases and policies; check kmsd and the HSM; verify the audit log."

extern const struct cli_command admin_commands[];       /* admin.c */
extern const struct cli_command admin_key_commands[];   /* admin_key.c */
extern const struct cli_command admin_alias_commands[];  /* admin_alias.c */
extern const struct cli_command admin_hsm_commands[];   /* admin_hsm.c */
extern const struct cli_command admin_audit_commands[]; /* admin_audit.c */
int admin_health(struct cli *cli, int argc, char **argv); /* admin_health.c */

/* admin_format.c: one key, a list of keys, aliases, as text or JSON. NULL
 * from a json_ function means out of memory. */
json_t *admin_json_key(const kms_key_metadata *md);
json_t *admin_json_keys(const kms_key_metadata *keys, size_t n, const char *next_page_token);
json_t *admin_json_aliases(const kms_alias *aliases, size_t n, const char *next_page_token);
void admin_print_key(FILE *to, const kms_key_metadata *md);
void admin_print_keys(FILE *to, const kms_key_metadata *keys, size_t n);
void admin_print_aliases(FILE *to, const kms_alias *aliases, size_t n);

/* Shows one key in the chosen form; returns an exit code. */
int admin_show_key(struct cli *cli, const kms_key_metadata *md);

/* admin_list.c: the pages of a list (key list, alias list). */

#define ADMIN_LIST_PAGES_MAX 100000 /* --all stops here: a server looping tokens */

/* Items moved out of each page into one array. */
struct admin_gathered {
	void *items; /* n items of the caller's type; free() it */
	size_t n;
	size_t cap;
};

/* Appends n items of size bytes (a bytewise move: the caller's page gives
 * them up). False, with nothing changed, when out of memory. */
bool admin_gather(struct admin_gathered *g, const void *items, size_t n, size_t size);

/* The paging options, numbered past any command's own. */
enum {
	ADMIN_OPT_LIMIT = CLI_OPT_COMMAND + 0x80,
	ADMIN_OPT_ALL,
	ADMIN_OPT_PAGE_TOKEN,
};

#define ADMIN_LIST_OPTIONS                                                     \
	{ "limit", required_argument, NULL, ADMIN_OPT_LIMIT },                 \
	{ "all", no_argument, NULL, ADMIN_OPT_ALL },                           \
	{ "page-token", required_argument, NULL, ADMIN_OPT_PAGE_TOKEN }

struct admin_pages {
	uint32_t limit;         /* --limit: per page; 0 is kmsd's default */
	bool all;               /* --all: follow the pages to the end */
	const char *page_token; /* to ask with: --page-token, then token */
	char *token;            /* the last page's next_page_token, owned; free() it */
	size_t page;
};

/* Takes one of ADMIN_LIST_OPTIONS: CLI_PROCEED, or a usage error (said)
 * for a bad value or any other option. */
int admin_list_option(struct cli *cli, int opt, struct admin_pages *pages);

/* Takes the next_page_token of the page just read (owning it). Returns
 * CLI_PROCEED to read another page (with page_token), CLI_EXIT_OK when
 * done, or CLI_EXIT_UNREACHABLE, said, when kmsd keeps answering with
 * more pages. */
int admin_pages_next(struct cli *cli, struct admin_pages *pages, char *next_page_token);

/* After a list printed as text: on stderr, how to see the rest of "what". */
void admin_pages_hint(struct cli *cli, const struct admin_pages *pages, const char *what);

#endif
