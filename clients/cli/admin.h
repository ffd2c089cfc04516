/*
 * admin.h: kms-admin's command families (one file each) and its output
 * formatting, shared by the commands and the tests.
 */
#ifndef KMS_ADMIN_H
#define KMS_ADMIN_H

#include "cli.h"

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

#endif
