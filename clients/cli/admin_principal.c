/*
 * admin_principal.c: kms-admin principal ... (create, list, describe,
 * disable, enable, delete) and kms-admin access-key ... (create, list,
 * revoke). docs/authorization.md says what they mean.
 *
 * A new access key's secret is shown once: written to --output FILE as a
 * credentials file (mode 0600, through a temporary file and a rename), or
 * printed on stdout with a warning on stderr. It is held in secure memory
 * and wiped once written; it never goes to stderr.
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

#include <kms/principals.h>

enum {
	OPT_ROLE = CLI_OPT_COMMAND,
	OPT_CERT_NAME,
	OPT_OUTPUT,
};

/* ---- presenting ---- */

static void roles_text(unsigned roles, char *buf, size_t cap)
{
	buf[0] = '\0';
	for (unsigned bit = 1; bit <= KMS_ROLE_AUDITOR; bit <<= 1)
		if (roles & bit) {
			size_t len = strlen(buf);
			snprintf(buf + len, cap - len, "%s%s", len ? "," : "", kms_role_name(bit));
		}
}

static json_t *json_principal(const kms_principal *p)
{
	json_t *roles = json_array();
	for (unsigned bit = 1; roles && bit <= KMS_ROLE_AUDITOR; bit <<= 1)
		if (p->roles & bit)
			json_array_append_new(roles, json_string(kms_role_name(bit)));
	if (!roles)
		return NULL;
	return json_pack("{s:o, s:o, s:o, s:s, s:I, s:I}", "name", cli_json_str(p->name),
	                 "roles", roles, "cert_name", cli_json_str(p->cert_name), "state",
	                 kms_principal_state_name(p->state), "created_at",
	                 (json_int_t)p->created_at, "updated_at", (json_int_t)p->updated_at);
}

static json_t *json_access_key(const kms_access_key *k)
{
	return json_pack("{s:o, s:o, s:s, s:I, s:I}", "access_key_id",
	                 cli_json_str(k->access_key_id), "principal", cli_json_str(k->principal),
	                 "state", kms_access_key_state_name(k->state), "created_at",
	                 (json_int_t)k->created_at, "revoked_at", (json_int_t)k->revoked_at);
}

static void print_principal(FILE *to, const kms_principal *p)
{
	char roles[64], created[CLI_TIME_MAX], updated[CLI_TIME_MAX];
	roles_text(p->roles, roles, sizeof roles);
	cli_field(to, "Name", p->name);
	cli_field(to, "Roles", roles);
	cli_field(to, "Cert name", p->cert_name[0] ? p->cert_name : "-");
	cli_field(to, "State", kms_principal_state_name(p->state));
	cli_field(to, "Created", cli_time(p->created_at, created));
	cli_field(to, "Updated", cli_time(p->updated_at, updated));
}

static void print_principals(FILE *to, const kms_principal *ps, size_t n)
{
	static const char *const headers[] = { "NAME", "ROLES", "STATE", "CERT NAME", "CREATED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 5, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char roles[64], created[CLI_TIME_MAX];
		roles_text(ps[i].roles, roles, sizeof roles);
		const char *cells[] = { ps[i].name, roles, kms_principal_state_name(ps[i].state),
			                ps[i].cert_name[0] ? ps[i].cert_name : "-",
			                cli_time(ps[i].created_at, created) };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static void print_access_keys(FILE *to, const kms_access_key *ks, size_t n)
{
	static const char *const headers[] = { "ACCESS KEY ID", "PRINCIPAL", "STATE", "CREATED",
		                               "REVOKED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 5, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char created[CLI_TIME_MAX], revoked[CLI_TIME_MAX];
		const char *cells[] = { ks[i].access_key_id, ks[i].principal,
			                kms_access_key_state_name(ks[i].state),
			                cli_time(ks[i].created_at, created),
			                ks[i].revoked_at ? cli_time(ks[i].revoked_at, revoked) : "-" };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static int show_principal(struct cli *cli, const kms_principal *p)
{
	if (cli->json)
		return cli_json_print(cli, json_principal(p));
	print_principal(cli->out, p);
	return CLI_EXIT_OK;
}

/* ---- principal ---- */

static int principal_create(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "cert-name", required_argument, NULL, OPT_CERT_NAME },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	unsigned roles = 0;
	const char *cert_name = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_ROLE) {
			unsigned role;
			if (kms_role_parse(optarg, &role) != KMS_OK)
				return cli_usage_error(cli, "--role %s: use admin, app or auditor",
				                       optarg);
			if (roles & role)
				return cli_usage_error(cli, "--role %s is given twice", optarg);
			roles |= role;
		} else if (opt == OPT_CERT_NAME) {
			cert_name = optarg;
		} else {
			return cli_usage_error(cli, "option not handled");
		}
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	if (!roles)
		return cli_usage_error(cli, "give at least one --role (admin, app or auditor)");
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_principal p;
	kms_error err;
	kms_status st = kms_create_principal(client, argv[optind], roles, cert_name, &p, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	return show_principal(cli, &p);
}

static int principal_describe(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_principal p;
	kms_status st = kms_describe_principal(client, argv[optind], &p, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	return show_principal(cli, &p);
}

/* enable, disable, delete: one name, one call, one word. */
static int principal_change(struct cli *cli, int argc, char **argv,
                            kms_status (*call)(kms_client *, const char *, kms_error *),
                            const char *done)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = call(client, argv[optind], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:s}", "name", cli_json_str(argv[optind]),
		                                     "result", done));
	cli_put_clean(cli->out, argv[optind]);
	fprintf(cli->out, ": %s\n", done);
	return CLI_EXIT_OK;
}

static int principal_enable(struct cli *cli, int argc, char **argv)
{
	return principal_change(cli, argc, argv, kms_enable_principal, "enabled");
}

static int principal_disable(struct cli *cli, int argc, char **argv)
{
	return principal_change(cli, argc, argv, kms_disable_principal, "disabled");
}

static int principal_delete(struct cli *cli, int argc, char **argv)
{
	return principal_change(cli, argc, argv, kms_delete_principal,
	                        "deleted (its access keys and grants are revoked)");
}

static kms_status read_principal_page(kms_client *client, const void *arg, uint32_t limit,
                                      const char *page_token, struct admin_page *page,
                                      kms_error *err)
{
	(void)arg;
	kms_principal_list list;
	kms_status st = kms_list_principals(client, limit, page_token, &list, err);
	*page = (struct admin_page){ list.principals, list.n_principals, list.next_page_token };
	return st;
}

static void nothing_to_free(void *item)
{
	(void)item;
}

static const struct admin_list_kind principal_list_kind = {
	.what = "principals",
	.item_size = sizeof(kms_principal),
	.read_page = read_principal_page,
	.item_free = nothing_to_free,
};

static kms_status read_access_key_page(kms_client *client, const void *principal,
                                       uint32_t limit, const char *page_token,
                                       struct admin_page *page, kms_error *err)
{
	kms_access_key_list list;
	kms_status st = kms_list_access_keys(client, principal, limit, page_token, &list, err);
	*page = (struct admin_page){ list.access_keys, list.n_access_keys, list.next_page_token };
	return st;
}

static const struct admin_list_kind access_key_list_kind = {
	.what = "access keys",
	.item_size = sizeof(kms_access_key),
	.read_page = read_access_key_page,
	.item_free = nothing_to_free,
};

/* principal list and access-key list: the same paging, another printer. */
static int list_command(struct cli *cli, int argc, char **argv,
                        const struct admin_list_kind *kind, int positionals)
{
	static const struct option opts[] = {
		ADMIN_LIST_OPTIONS, CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct admin_pages pages = { 0 };
	struct admin_gathered gathered = { 0 };
	kms_client *client = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0)
		if ((code = admin_list_option(cli, opt, &pages)) != CLI_PROCEED)
			return code;
	if ((code = cli_getopt_end(cli, opt, argc, argv, positionals, positionals)) != CLI_PROCEED)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	const char *arg = positionals ? argv[optind] : NULL;
	if ((code = admin_list_read(cli, client, kind, arg, &pages, &gathered)) != CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		bool principals = kind == &principal_list_kind;
		json_t *array = json_array();
		for (size_t i = 0; array && i < gathered.n; i++) {
			json_t *item = principals
			                       ? json_principal((kms_principal *)gathered.items + i)
			                       : json_access_key((kms_access_key *)gathered.items + i);
			if (!item || json_array_append_new(array, item) != 0) {
				json_decref(array);
				array = NULL;
			}
		}
		code = cli_json_print(cli, array ? json_pack("{s:o, s:o}",
		                                             principals ? "principals" : "access_keys",
		                                             array, "next_page_token",
		                                             cli_json_str(pages.token ? pages.token : ""))
		                                 : NULL);
	} else {
		if (kind == &principal_list_kind)
			print_principals(cli->out, gathered.items, gathered.n);
		else
			print_access_keys(cli->out, gathered.items, gathered.n);
		admin_pages_hint(cli, &pages, kind);
	}
out:
	admin_gathered_free(&gathered, kind);
	free(pages.token);
	kms_client_close(client);
	return code;
}

static int principal_list(struct cli *cli, int argc, char **argv)
{
	return list_command(cli, argc, argv, &principal_list_kind, 0);
}

/* ---- access-key ---- */

static const char hex_digits[] = "0123456789abcdef";

/* The credentials file (docs/request-signing.md, "Credentials file") in
 * secure memory; NULL when out of it. */
static char *credentials_text(const kms_access_key *key, const uint8_t *secret, size_t *len)
{
	size_t cap = 256 + 2 * KMS_ACCESS_KEY_SECRET_LEN;
	char *text = kms_secure_alloc(cap);
	if (!text)
		return NULL;
	int n = snprintf(text, cap,
	                 "# kms credentials: principal %s (keep this file secret)\n"
	                 "principal = %s\n"
	                 "access_key_id = %s\n"
	                 "secret = ",
	                 key->principal, key->principal, key->access_key_id);
	size_t at = (size_t)n;
	for (size_t i = 0; i < KMS_ACCESS_KEY_SECRET_LEN; i++) {
		text[at++] = hex_digits[secret[i] >> 4];
		text[at++] = hex_digits[secret[i] & 15];
	}
	text[at++] = '\n';
	text[at] = '\0';
	*len = at;
	return text;
}

static int access_key_create(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, OPT_OUTPUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *output = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_OUTPUT)
			output = optarg;
		else
			return cli_usage_error(cli, "option not handled");
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	/* Refused before the key exists: no secret made that cannot be kept. */
	if (output && (code = cli_check_private_target(cli, output)) != CLI_EXIT_OK)
		return code;
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_access_key key;
	uint8_t *secret = NULL;
	kms_error err;
	kms_status st = kms_create_access_key(client, argv[optind], &key, &secret, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	size_t len = 0;
	char *text = credentials_text(&key, secret, &len);
	kms_secure_free(secret);
	if (!text)
		return cli_out_of_secure_memory(cli);
	if (output) {
		code = cli_write_private_file(cli, output, text, len);
		kms_secure_free(text);
		if (code != CLI_EXIT_OK) {
			fprintf(cli->err, "%s: access key %s was created but its secret could not be "
			        "saved: revoke it (kms-admin access-key revoke %s) and create another\n",
			        cli->prog, key.access_key_id, key.access_key_id);
			return code;
		}
		if (cli->json)
			return cli_json_print(cli, json_pack("{s:o, s:o, s:o}", "access_key_id",
			                                     cli_json_str(key.access_key_id),
			                                     "principal", cli_json_str(key.principal),
			                                     "credentials_file", cli_json_str(output)));
		fprintf(cli->out, "%s: access key %s, credentials written to ", key.principal,
		        key.access_key_id);
		cli_put_clean(cli->out, output);
		fputc('\n', cli->out);
		return CLI_EXIT_OK;
	}
	fprintf(cli->err, "%s: this is the only time the secret of access key %s is shown: "
	        "keep it now (or use --output FILE)\n", cli->prog, key.access_key_id);
	if (cli->json) {
		/* The secret's line, as the credentials file has it. */
		const char *hex = strstr(text, "secret = ") + strlen("secret = ");
		json_t *j = json_pack("{s:o, s:o, s:s#}", "access_key_id",
		                      cli_json_str(key.access_key_id), "principal",
		                      cli_json_str(key.principal), "secret", hex,
		                      (int)(2 * KMS_ACCESS_KEY_SECRET_LEN));
		code = cli_json_print(cli, j);
	} else {
		code = cli_write_output(cli, NULL, text, len);
	}
	kms_secure_free(text);
	return code;
}

static int access_key_list(struct cli *cli, int argc, char **argv)
{
	return list_command(cli, argc, argv, &access_key_list_kind, 1);
}

static int access_key_revoke(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_revoke_access_key(client, argv[optind], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:b}", "access_key_id",
		                                     cli_json_str(argv[optind]), "revoked", 1));
	cli_put_clean(cli->out, argv[optind]);
	fputs(": revoked\n", cli->out);
	return CLI_EXIT_OK;
}

#define LIST_DETAILS(what)                                                                 \
	"  --limit N             " what " per page, 1.." CLI_STR(KMS_LIST_LIMIT_MAX) "\n"     \
	"  --all                 follow the pages to the end\n"                              \
	"  --page-token T        start at this page\n"

const struct cli_command admin_principal_commands[] = {
	{ .name = "create", .run = principal_create,
	  .args = "NAME --role ROLE... [--cert-name CN]",
	  .help = "Create a principal (a service, a person) with one or more roles",
	  .details = "  NAME                  1..63 of [A-Za-z0-9._-]; never reusable once deleted\n"
	             "  --role ROLE           admin, app or auditor; repeat for more\n"
	             "  --cert-name CN        the TLS client certificate name it presents\n" },
	{ .name = "list", .run = principal_list, .args = "[--limit N] [--all]",
	  .help = "List principals (deleted ones are not shown)",
	  .details = LIST_DETAILS("principals") },
	{ .name = "describe", .run = principal_describe, .args = "NAME",
	  .help = "Show a principal" },
	{ .name = "disable", .run = principal_disable, .args = "NAME",
	  .help = "Disable a principal: its requests are refused" },
	{ .name = "enable", .run = principal_enable, .args = "NAME",
	  .help = "Enable a disabled principal" },
	{ .name = "delete", .run = principal_delete, .args = "NAME",
	  .help = "Delete a principal: revokes its access keys and grants; the name is never "
	          "reused" },
	{ 0 },
};

const struct cli_command admin_access_key_commands[] = {
	{ .name = "create", .run = access_key_create, .args = "PRINCIPAL [--output FILE]",
	  .help = "Create an access key (at most 2 active per principal); its secret is shown "
	          "once",
	  .details = "  --output FILE         write a credentials file (mode 0600) instead of\n"
	             "                        printing the secret on stdout\n" },
	{ .name = "list", .run = access_key_list, .args = "PRINCIPAL [--limit N] [--all]",
	  .help = "List a principal's access keys, active and revoked",
	  .details = LIST_DETAILS("access keys") },
	{ .name = "revoke", .run = access_key_revoke, .args = "ACCESS_KEY_ID",
	  .help = "Revoke an access key: requests signed with it are refused" },
	{ 0 },
};
