/*
 * admin.h: kms-admin's command families (one file each) and its output
 * formatting, shared by the commands and the tests.
 */
#ifndef KMS_ADMIN_H
#define KMS_ADMIN_H

#include <kms/keks.h>

#include "clients/cli/cli.h"

#define ADMIN_PROG "kms-admin"
#define ADMIN_ABOUT \
	"Manage kms keys, aliases, policies, principals and grants; check kmsd and the HSM; "\
	"verify the audit log."

extern const struct cli_command admin_commands[];       /* admin.c */
extern const struct cli_command admin_key_commands[];   /* admin_key.c */
extern const struct cli_command admin_alias_commands[];  /* admin_alias.c */
extern const struct cli_command admin_hsm_commands[];   /* admin_hsm.c */
extern const struct cli_command admin_audit_commands[]; /* admin_audit.c */
extern const struct cli_command admin_principal_commands[];  /* admin_principal.c */
extern const struct cli_command admin_access_key_commands[]; /* admin_principal.c */
extern const struct cli_command admin_grant_commands[];      /* admin_grant.c */
extern const struct cli_command admin_report_commands[];     /* admin_report.c */
extern const struct cli_command admin_consent_manager_commands[]; /* admin_consent.c */
extern const struct cli_command admin_consent_commands[];         /* admin_consent.c */
extern const struct cli_command admin_dp_commands[];         /* admin_dp.c */
extern const struct cli_command admin_retention_commands[];  /* admin_dp.c */
/* admin_policy.c: key policy grant|revoke. */
int admin_policy_grant(struct cli *cli, int argc, char **argv);
int admin_policy_revoke(struct cli *cli, int argc, char **argv);
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

/* One page of a list taken apart: n items of the list's type, and the token
 * for the next page ("" on the last). */
struct admin_page {
	void *items;
	size_t n;
	char *next_page_token;
};

/* What differs between the lists kms-admin pages through (keys, aliases). */
struct admin_list_kind {
	const char *what;  /* "keys", "aliases": for the hint after the list */
	size_t item_size;  /* sizeof one item: kms_key_metadata, kms_alias */
	/* Reads the page at page_token (NULL: the first) of limit items; arg is
	 * the kind's own (an alias list's key). On KMS_OK page and everything
	 * it points to are the caller's; on failure err says why. */
	kms_status (*read_page)(kms_client *client, const void *arg, uint32_t limit,
	                        const char *page_token, struct admin_page *page,
	                        kms_error *err);
	/* Frees what one item holds, not the item itself. */
	void (*item_free)(void *item);
};

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

/* The key list's kind (admin_key.c), for the commands that read every key. */
extern const struct admin_list_kind admin_key_list_kind;

/* Takes one of ADMIN_LIST_OPTIONS: CLI_PROCEED, or a usage error (said)
 * for a bad value or any other option. */
int admin_list_option(struct cli *cli, int opt, struct admin_pages *pages);

/* Reads the page pages asks for, or with --all every page from there, into
 * g. Returns CLI_EXIT_OK, or an exit code having said why (kmsd refused,
 * out of memory, or kmsd keeps answering with more pages). pages->token is
 * then the last page's next_page_token. */
int admin_list_read(struct cli *cli, kms_client *client, const struct admin_list_kind *kind,
                    const void *arg, struct admin_pages *pages, struct admin_gathered *g);

/* Frees the gathered items (kind->item_free each) and the array. */
void admin_gathered_free(struct admin_gathered *g, const struct admin_list_kind *kind);

/* After a list printed as text: on stderr, how to see the rest of it. */
void admin_pages_hint(struct cli *cli, const struct admin_pages *pages,
                      const struct admin_list_kind *kind);

/* admin_report.c: the residency report, also written into the evidence
 * pack (admin_report_evidence.c). */
struct admin_residency {
	kms_health health;
	kms_kek_list keks;
	kms_checkpoint checkpoint;
	struct admin_gathered keys; /* kms_key_metadata */
	char origin[256];           /* the log's origin: the note's first line */
};

/* Reads it from kmsd (Health, ListKeks, GetCheckpoint, every key); an exit
 * code, having said why on failure. Free r with admin_residency_free
 * either way (zero it first). */
int admin_residency_fetch(struct cli *cli, kms_client *client, struct admin_residency *r);
void admin_residency_free(struct admin_residency *r);
/* The report as JSON; NULL when out of memory. */
json_t *admin_residency_json(const struct admin_residency *r);

/* admin_report_evidence.c: report evidence. */
int admin_report_evidence(struct cli *cli, int argc, char **argv);

#endif
