/*
 * admin_policy.c: kms-admin key policy grant|revoke: read a key's policy,
 * add or remove one statement, put it back (docs/authorization.md, "Key
 * policies"). kmsd checks the document it is given; here only what this
 * command adds.
 *
 * A key with no policy document of its own runs under kmsd's default policy
 * ([authz] default_key_policy, or the built-in one), which GetKeyPolicy
 * returns for it: the first statement added starts from that document, so
 * what the key allowed it still allows.
 */
#include "clients/cli/admin.h"

#include <stdlib.h>
#include <string.h>

enum {
	OPT_PRINCIPAL = CLI_OPT_COMMAND,
	OPT_OP,
	OPT_CONTEXT_EQUALS,
	OPT_SID,
};

#define POLICY_OPS_MAX 64
#define POLICY_SID_MAX 64

static bool sid_ok(const char *sid)
{
	size_t len = strlen(sid);
	if (len < 1 || len > POLICY_SID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = sid[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The policy that applies to the key (its own, or kmsd's default), parsed,
 * and its Statement array (borrowed). */
static int policy_read(struct cli *cli, kms_client *client, const char *key, json_t **doc,
                       json_t **statements)
{
	char *text = NULL;
	bool is_default = false;
	kms_error err;
	*doc = NULL;
	if (kms_get_key_policy_info(client, key, &text, &is_default, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (!text[0]) {
		/* Only a kmsd that does not send the default it applies. */
		kms_free(text);
		fprintf(cli->err, "%s: kmsd sent no policy for key %s (it has none of its own and "
		        "this kmsd does not send its default): write the whole policy and use "
		        "kms-admin key policy put\n", cli->prog, key);
		return CLI_EXIT_REFUSED;
	}
	if (is_default)
		fprintf(cli->err, "%s: key %s has no policy document of its own: starting from "
		        "kmsd's default policy\n", cli->prog, key);
	json_error_t jerr;
	*doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	kms_free(text);
	*statements = *doc ? json_object_get(*doc, "Statement") : NULL;
	if (!json_is_array(*statements)) {
		json_decref(*doc);
		*doc = NULL;
		fprintf(cli->err, "%s: key %s's policy is not a document with a Statement array\n",
		        cli->prog, key);
		return CLI_EXIT_REFUSED;
	}
	return CLI_EXIT_OK;
}

static int policy_write(struct cli *cli, kms_client *client, const char *key, json_t *doc)
{
	/* json_dumps's buffer comes from the allocator main() gave jansson:
	 * released with jansson's own free function, not free(). */
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!text)
		return cli_out_of_memory(cli);
	json_malloc_t alloc_fn;
	json_free_t free_fn;
	json_get_alloc_funcs(&alloc_fn, &free_fn);
	kms_error err;
	kms_status st = kms_put_key_policy(client, key, text, &err);
	free_fn(text);
	return st == KMS_OK ? CLI_EXIT_OK : cli_report(cli, &err);
}

/* The index of the statement with that Sid, or -1. */
static long find_sid(json_t *statements, const char *sid)
{
	size_t i;
	json_t *s;
	json_array_foreach(statements, i, s) {
		const char *have = json_string_value(json_object_get(s, "Sid"));
		if (have && !strcmp(have, sid))
			return (long)i;
	}
	return -1;
}

int admin_policy_grant(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "principal", required_argument, NULL, OPT_PRINCIPAL },
		{ "op", required_argument, NULL, OPT_OP },
		{ "context-equals", required_argument, NULL, OPT_CONTEXT_EQUALS },
		{ "sid", required_argument, NULL, OPT_SID },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *principal = NULL, *sid = NULL;
	const char *ops[POLICY_OPS_MAX];
	size_t n_ops = 0;
	struct cli_pairs equals = { 0 };
	const char *why;
	json_t *doc = NULL, *statement = NULL;
	kms_client *client = NULL;
	int opt = CLI_GETOPT_DONE, code = CLI_EXIT_OK;
	while (code == CLI_EXIT_OK && (opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_PRINCIPAL:
			principal = optarg;
			break;
		case OPT_OP:
			if (n_ops == POLICY_OPS_MAX)
				code = cli_usage_error(cli, "--op: at most %d", POLICY_OPS_MAX);
			else
				ops[n_ops++] = optarg;
			break;
		case OPT_CONTEXT_EQUALS:
			if ((why = cli_pairs_add(&equals, optarg)) != NULL)
				code = cli_usage_error(cli, "--context-equals %s: %s", optarg, why);
			break;
		case OPT_SID:
			sid = optarg;
			break;
		default:
			code = cli_usage_error(cli, "option not handled");
		}
	}
	if (code != CLI_EXIT_OK || (code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		goto out;
	const char *key = argv[optind];
	if (!principal || !n_ops) {
		code = cli_usage_error(cli, "give --principal P and at least one --op OPERATION");
		goto out;
	}
	if (!sid)
		sid = principal; /* a principal name is a valid Sid */
	if (!sid_ok(sid)) {
		code = cli_usage_error(cli, "--sid: 1..%d of [A-Za-z0-9._-]", POLICY_SID_MAX);
		goto out;
	}
	json_t *actions = json_array();
	for (size_t i = 0; actions && i < n_ops; i++)
		if (json_array_append_new(actions, cli_json_str(ops[i])) != 0) {
			json_decref(actions);
			actions = NULL;
		}
	statement = actions ? json_pack("{s:s, s:s, s:o, s:o}", "Sid", sid, "Effect", "Allow",
	                                "Principal", cli_json_str(principal), "Action", actions)
	                    : NULL;
	if (statement && equals.n) {
		json_t *eq = json_object();
		for (size_t i = 0; eq && i < equals.n; i++)
			if (json_object_set_new(eq, equals.pairs[i].key,
			                        cli_json_str(equals.pairs[i].value)) != 0) {
				json_decref(eq);
				eq = NULL;
			}
		if (!eq || json_object_set_new(statement, "Condition",
		                               json_pack("{s:o}", "ContextEquals", eq)) != 0) {
			json_decref(statement);
			statement = NULL;
		}
	}
	if (!statement) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	json_t *statements;
	if ((code = policy_read(cli, client, key, &doc, &statements)) != CLI_EXIT_OK)
		goto out;
	if (find_sid(statements, sid) >= 0) {
		fprintf(cli->err, "%s: key %s's policy already has a statement with Sid %s: choose "
		        "another --sid, or remove it first (kms-admin key policy revoke %s --sid "
		        "%s)\n", cli->prog, key, sid, key, sid);
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	if (json_array_append(statements, statement) != 0) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if ((code = policy_write(cli, client, key, doc)) != CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		code = cli_json_print(cli, json_pack("{s:o, s:o, s:O}", "key_id", cli_json_str(key),
		                                     "sid", cli_json_str(sid), "statement",
		                                     statement));
	} else {
		cli_put_clean(cli->out, key);
		fprintf(cli->out, ": policy statement %s added: allow ", sid);
		cli_put_clean(cli->out, principal);
		fputc('\n', cli->out);
	}
out:
	json_decref(statement);
	json_decref(doc);
	cli_pairs_free(&equals);
	kms_client_close(client);
	return code;
}

int admin_policy_revoke(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sid", required_argument, NULL, OPT_SID },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *sid = NULL;
	json_t *doc = NULL;
	kms_client *client = NULL;
	int opt, code;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_SID)
			sid = optarg;
		else
			return cli_usage_error(cli, "option not handled");
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	const char *key = argv[optind];
	if (!sid || !sid_ok(sid))
		return cli_usage_error(cli, "give --sid SID (1..%d of [A-Za-z0-9._-]): the "
		                       "statement to remove", POLICY_SID_MAX);
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	json_t *statements;
	if ((code = policy_read(cli, client, key, &doc, &statements)) != CLI_EXIT_OK)
		goto out;
	long at = find_sid(statements, sid);
	if (at < 0) {
		fprintf(cli->err, "%s: key %s's policy has no statement with Sid %s: kms-admin key "
		        "policy get %s shows it\n", cli->prog, key, sid, key);
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	if (json_array_size(statements) == 1) {
		fprintf(cli->err, "%s: statement %s is the only one of key %s's policy and a policy "
		        "needs one: put another policy instead (kms-admin key policy put)\n",
		        cli->prog, sid, key);
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	json_array_remove(statements, (size_t)at);
	if ((code = policy_write(cli, client, key, doc)) != CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		code = cli_json_print(cli, json_pack("{s:o, s:o, s:b}", "key_id", cli_json_str(key),
		                                     "sid", cli_json_str(sid), "removed", 1));
	} else {
		cli_put_clean(cli->out, key);
		fprintf(cli->out, ": policy statement %s removed\n", sid);
	}
out:
	json_decref(doc);
	kms_client_close(client);
	return code;
}
