/*
 * admin_key.c: kms-admin key ... (create, list, describe, state changes,
 * rotation, deletion, tags, policy).
 */
#include "clients/cli/admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <kms/limits.h>
#include <kms/secmem.h>

/* A policy document from a file ("-": stdin), checked to be JSON here so a
 * typo fails before it reaches kmsd. *policy is NUL-terminated; free it. */
static int read_policy(struct cli *cli, const char *path, char **policy)
{
	size_t len, total;
	json_error_t jerr;
	*policy = malloc(KMS_POLICY_MAX + 1);
	if (!*policy)
		return cli_out_of_memory(cli);
	int code = cli_read_input(cli, path, (uint8_t *)*policy, KMS_POLICY_MAX, &len, &total);
	if (code == CLI_EXIT_OK && total > KMS_POLICY_MAX)
		code = cli_usage_error(cli, "the policy is %zu bytes; at most %u", total,
		                       KMS_POLICY_MAX);
	if (code == CLI_EXIT_OK) {
		(*policy)[len] = '\0';
		json_t *doc = json_loadb(*policy, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!doc || !json_is_object(doc))
			code = cli_usage_error(cli, "%s is not a JSON object: %s (line %d)",
			                       path, doc ? "not an object" : jerr.text,
			                       jerr.line);
		json_decref(doc);
	}
	if (code != CLI_EXIT_OK) {
		free(*policy);
		*policy = NULL;
	}
	return code;
}

/* ---- key create ---- */

enum {
	OPT_DESCRIPTION = CLI_OPT_COMMAND,
	OPT_SPEC,
	OPT_USAGE,
	OPT_ALIAS,
	OPT_TAG,
	OPT_ROTATION_DAYS,
	OPT_POLICY,
	OPT_DAYS,
	OPT_PROTECTION,
	OPT_PER_DATA_PRINCIPAL,
};

/* The one usage kmsd gives each spec. */
static kms_key_usage usage_of(kms_key_spec spec)
{
	switch (spec) {
	case KMS_KEY_SPEC_HMAC_SHA256:
		return KMS_KEY_USAGE_GENERATE_VERIFY_MAC;
	case KMS_KEY_SPEC_ED25519:
	case KMS_KEY_SPEC_ECC_P256:
		return KMS_KEY_USAGE_SIGN_VERIFY;
	default:
		return KMS_KEY_USAGE_ENCRYPT_DECRYPT;
	}
}

/* The specs whose usage is usage, for a message. */
static const char *specs_for(kms_key_usage usage)
{
	switch (usage) {
	case KMS_KEY_USAGE_GENERATE_VERIFY_MAC:
		return "--spec HMAC_SHA256";
	case KMS_KEY_USAGE_SIGN_VERIFY:
		return "--spec ECC_P256 or --spec ED25519";
	default:
		return "--spec AES_256";
	}
}

/*
 * What kmsd makes, checked before a request, and the blanks filled in: the
 * spec (AES_256 when none) gives the usage, which --usage may only repeat;
 * an ED25519 key lives in the HSM (SoftHSM cannot wrap an Ed25519 private
 * key), an HMAC_SHA256 or ECC_P256 key is wrapped, an AES_256 key either.
 */
static int spec_fit(struct cli *cli, kms_create_key_params *params)
{
	if (params->key_spec == KMS_KEY_SPEC_UNSPECIFIED)
		params->key_spec = KMS_KEY_SPEC_AES_256;
	const char *spec = kms_key_spec_name(params->key_spec);
	kms_key_usage usage = usage_of(params->key_spec);
	if (params->key_usage != KMS_KEY_USAGE_UNSPECIFIED && params->key_usage != usage)
		return cli_usage_error(cli, "%s keys are %s, not %s: leave --usage out, "
		                       "or give %s", spec, kms_key_usage_name(usage),
		                       kms_key_usage_name(params->key_usage),
		                       specs_for(params->key_usage));
	params->key_usage = usage;
	if (params->key_spec == KMS_KEY_SPEC_ED25519) {
		if (params->protection == KMS_KEY_PROTECTION_WRAPPED)
			return cli_usage_error(cli, "ED25519 keys are hsm-resident only (the HSM "
			                       "cannot wrap their private keys): leave --protection "
			                       "out");
		params->protection = KMS_KEY_PROTECTION_HSM_RESIDENT;
	} else if (params->key_spec != KMS_KEY_SPEC_AES_256 &&
	           params->protection == KMS_KEY_PROTECTION_HSM_RESIDENT) {
		return cli_usage_error(cli, "%s keys cannot be hsm-resident: leave --protection "
		                       "out (wrapped)", spec);
	}
	return CLI_EXIT_OK;
}

static int key_create(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "description", required_argument, NULL, OPT_DESCRIPTION },
		{ "spec", required_argument, NULL, OPT_SPEC },
		{ "usage", required_argument, NULL, OPT_USAGE },
		{ "alias", required_argument, NULL, OPT_ALIAS },
		{ "tag", required_argument, NULL, OPT_TAG },
		{ "rotation-days", required_argument, NULL, OPT_ROTATION_DAYS },
		{ "policy", required_argument, NULL, OPT_POLICY },
		{ "protection", required_argument, NULL, OPT_PROTECTION },
		{ "per-data-principal", no_argument, NULL, OPT_PER_DATA_PRINCIPAL },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	kms_create_key_params params;
	struct cli_pairs tags = { 0 };
	const char *policy_file = NULL;
	char *policy = NULL;
	kms_client *client = NULL;
	kms_key_metadata md;
	kms_error err;
	const char *why;
	int opt = CLI_GETOPT_DONE, code = CLI_EXIT_OK;

	memset(&params, 0, sizeof params);
	while (code == CLI_EXIT_OK && (opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_DESCRIPTION:
			params.description = optarg;
			break;
		case OPT_SPEC:
			if (kms_key_spec_parse(optarg, &params.key_spec) != KMS_OK)
				code = cli_usage_error(cli, "unknown key spec \"%s\": AES_256, "
				                       "HMAC_SHA256, ECC_P256 or ED25519", optarg);
			break;
		case OPT_USAGE:
			if (kms_key_usage_parse(optarg, &params.key_usage) != KMS_OK)
				code = cli_usage_error(cli, "unknown key usage \"%s\"", optarg);
			break;
		case OPT_ALIAS:
			params.alias = optarg;
			break;
		case OPT_TAG:
			if ((why = cli_pairs_add(&tags, optarg)) != NULL)
				code = cli_usage_error(cli, "--tag %s: %s", optarg, why);
			break;
		case OPT_ROTATION_DAYS:
			if (!cli_parse_u32(optarg, 0, KMS_ROTATION_DAYS_MAX,
			                   &params.rotation_period_days))
				code = cli_usage_error(cli, "--rotation-days takes 0..%d",
				                       KMS_ROTATION_DAYS_MAX);
			break;
		case OPT_POLICY:
			policy_file = optarg;
			break;
		case OPT_PROTECTION:
			if (kms_key_protection_parse(optarg, &params.protection) != KMS_OK)
				code = cli_usage_error(cli, "--protection takes wrapped or "
				                       "hsm-resident, not \"%s\"", optarg);
			break;
		case OPT_PER_DATA_PRINCIPAL:
			params.per_data_principal = true;
			break;
		default:
			code = cli_usage_error(cli, "option not handled");
		}
	}
	if (code != CLI_EXIT_OK ||
	    (code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		goto out;
	if ((code = spec_fit(cli, &params)) != CLI_EXIT_OK)
		goto out;
	if (policy_file && (code = read_policy(cli, policy_file, &policy)) != CLI_EXIT_OK)
		goto out;
	params.policy = policy;
	params.tags = tags.pairs;
	params.n_tags = tags.n;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		goto out;
	if (kms_create_key(client, &params, &md, &err) != KMS_OK) {
		code = cli_report(cli, &err);
		goto out;
	}
	code = admin_show_key(cli, &md);
	kms_key_metadata_free(&md);
out:
	kms_client_close(client);
	cli_pairs_free(&tags);
	free(policy);
	return code;
}

/* ---- key list ---- */

static kms_status read_key_page(kms_client *client, const void *arg, uint32_t limit,
                                const char *page_token, struct admin_page *page,
                                kms_error *err)
{
	kms_key_list list;
	kms_status st = kms_list_keys(client, limit, page_token, &list, err);
	*page = (struct admin_page){ list.keys, list.n_keys, list.next_page_token };
	return st;
}

static void key_free(void *item)
{
	kms_key_metadata_free(item);
}

const struct admin_list_kind admin_key_list_kind = {
	.what = "keys",
	.item_size = sizeof(kms_key_metadata),
	.read_page = read_key_page,
	.item_free = key_free,
};

static int key_list(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		ADMIN_LIST_OPTIONS, CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct admin_pages pages = { 0 };
	struct admin_gathered gathered = { 0 };
	kms_client *client = NULL;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if ((code = admin_list_option(cli, opt, &pages)) != CLI_PROCEED)
			return code;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_list_read(cli, client, &admin_key_list_kind, NULL, &pages, &gathered)) !=
	    CLI_EXIT_OK)
		goto out;
	if (cli->json) {
		code = cli_json_print(cli, admin_json_keys(gathered.items, gathered.n, pages.token));
	} else {
		admin_print_keys(cli->out, gathered.items, gathered.n);
		admin_pages_hint(cli, &pages, &admin_key_list_kind);
	}
out:
	admin_gathered_free(&gathered, &admin_key_list_kind);
	free(pages.token);
	kms_client_close(client);
	return code;
}

/* ---- key describe ---- */

static int key_describe(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_key_metadata md;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_describe_key(client, argv[optind], &md, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	code = admin_show_key(cli, &md);
	kms_key_metadata_free(&md);
	return code;
}

/* ---- state changes ---- */

/* Prints the outcome of a call that returns nothing: a line, or JSON with
 * the key id and json_field (when not NULL). */
static int done(struct cli *cli, const char *key_id, const char *what, const char *json_field,
                const char *json_value)
{
	if (cli->json && json_field)
		return cli_json_print(cli, json_pack("{s:o, s:s}", "key_id", cli_json_str(key_id),
		                                     json_field, json_value));
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o}", "key_id", cli_json_str(key_id)));
	cli_put_clean(cli->out, key_id);
	fprintf(cli->out, ": %s\n", what);
	return CLI_EXIT_OK;
}

/* enable and disable differ only in the call and the words. */
static int key_set_enabled(struct cli *cli, int argc, char **argv, bool enable)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = enable ? kms_enable_key(client, argv[optind], &err)
	                       : kms_disable_key(client, argv[optind], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	return enable ? done(cli, argv[optind], "enabled", "key_state", "ENABLED")
	              : done(cli, argv[optind], "disabled", "key_state", "DISABLED");
}

static int key_enable(struct cli *cli, int argc, char **argv)
{
	return key_set_enabled(cli, argc, argv, true);
}

static int key_disable(struct cli *cli, int argc, char **argv)
{
	return key_set_enabled(cli, argc, argv, false);
}

static int key_rotate(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_key_metadata md;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	code = CLI_EXIT_OK;
	kms_status st = kms_rotate_key(client, argv[optind], &md, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		code = cli_json_print(cli, admin_json_key(&md));
	} else {
		cli_put_clean(cli->out, md.key_id);
		fprintf(cli->out, ": rotated; primary version is now v%" PRIu32 "\n",
		        md.primary_version);
	}
	kms_key_metadata_free(&md);
	return code;
}

static int key_set_rotation(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_key_metadata md;
	kms_error err;
	uint32_t days;
	char next[CLI_TIME_MAX];
	int code = cli_parse_args(cli, argc, argv, 2, 2);
	if (code != CLI_PROCEED)
		return code;
	if (!cli_parse_u32(argv[optind + 1], 0, KMS_ROTATION_DAYS_MAX, &days))
		return cli_usage_error(cli, "DAYS is 1..%d, or 0 to turn rotation off",
		                       KMS_ROTATION_DAYS_MAX);
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_set_rotation_period(client, argv[optind], days, &md, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		code = cli_json_print(cli, admin_json_key(&md));
	} else {
		cli_put_clean(cli->out, md.key_id);
		if (days)
			fprintf(cli->out, ": rotates every %" PRIu32 " days; next %s\n", days,
			        cli_time(md.next_rotation_at, next));
		else
			fprintf(cli->out, ": automatic rotation off\n");
	}
	kms_key_metadata_free(&md);
	return code;
}

static int key_set_description(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 2, 2, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_update_key_description(client, argv[optind], argv[optind + 1], &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o}", "key_id",
		                                     cli_json_str(argv[optind]), "description",
		                                     cli_json_str(argv[optind + 1])));
	return done(cli, argv[optind], "description updated", NULL, NULL);
}

/* ---- deletion ---- */

static int key_schedule_deletion(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, OPT_DAYS },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	uint32_t days = 0;
	int64_t deletion_date;
	kms_key_state state;
	kms_client *client;
	kms_error err;
	char when[CLI_TIME_MAX];
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt != OPT_DAYS ||
		    !cli_parse_u32(optarg, KMS_DELETION_DAYS_MIN, KMS_DELETION_DAYS_MAX, &days))
			return cli_usage_error(cli, "--days takes %d..%d", KMS_DELETION_DAYS_MIN,
			                       KMS_DELETION_DAYS_MAX);
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	const char *key_id = argv[optind];
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	kms_status st = kms_schedule_key_deletion(client, key_id, days, &deletion_date, &state,
	                                          &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:s, s:I}", "key_id",
		                                     cli_json_str(key_id), "key_state",
		                                     kms_key_state_name(state), "deletion_date",
		                                     (json_int_t)deletion_date));
	cli_put_clean(cli->out, key_id);
	fprintf(cli->out, ": %s; destroyed at %s unless cancelled (%s key cancel-deletion)\n",
	        kms_key_state_name(state), cli_time(deletion_date, when), cli->prog);
	return CLI_EXIT_OK;
}

static int key_cancel_deletion(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_key_state state;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_cancel_key_deletion(client, argv[optind], &state, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:s}", "key_id",
		                                     cli_json_str(argv[optind]), "key_state",
		                                     kms_key_state_name(state)));
	cli_put_clean(cli->out, argv[optind]);
	fprintf(cli->out, ": deletion cancelled; the key is %s\n", kms_key_state_name(state));
	return CLI_EXIT_OK;
}

/* ---- tags ---- */

static int key_tag(struct cli *cli, int argc, char **argv)
{
	struct cli_pairs tags = { 0 };
	kms_client *client;
	kms_error err;
	int code = cli_parse_args(cli, argc, argv, 2, 1 + CLI_MAX_PAIRS);
	if (code != CLI_PROCEED)
		return code;
	const char *key_id = argv[optind];
	for (int i = optind + 1; i < argc; i++) {
		const char *why = cli_pairs_add(&tags, argv[i]);
		if (why) {
			cli_pairs_free(&tags);
			return cli_usage_error(cli, "%s: %s", argv[i], why);
		}
	}
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK) {
		cli_pairs_free(&tags);
		return code;
	}
	kms_status st = kms_tag_key(client, key_id, tags.pairs, tags.n, &err);
	kms_client_close(client);
	size_t n = tags.n;
	cli_pairs_free(&tags);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:I}", "key_id", cli_json_str(key_id),
		                                     "tagged", (json_int_t)n));
	cli_put_clean(cli->out, key_id);
	fprintf(cli->out, ": %zu tag%s set\n", n, n == 1 ? "" : "s");
	return CLI_EXIT_OK;
}

static int key_untag(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 2, 1 + CLI_MAX_PAIRS, &client);
	if (code != CLI_PROCEED)
		return code;
	const char *key_id = argv[optind];
	const char *const *tag_keys = (const char *const *)&argv[optind + 1];
	size_t n = (size_t)(argc - optind - 1);
	size_t removed;
	kms_status st = kms_untag_key(client, key_id, tag_keys, n, &removed, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	/* What kmsd says it removed, not what was asked: a key the key does not
	 * have is not removed. An older kmsd does not say. */
	bool known = removed != KMS_UNTAG_UNKNOWN;
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:o}", "key_id", cli_json_str(key_id),
		                                     "untagged", known ? json_integer((json_int_t)removed)
		                                                       : json_null()));
	cli_put_clean(cli->out, key_id);
	if (known)
		fprintf(cli->out, ": %zu tag%s removed\n", removed, removed == 1 ? "" : "s");
	else
		fprintf(cli->out, ": done (kmsd does not say how many tags it removed)\n");
	return CLI_EXIT_OK;
}

/* ---- policy ---- */

static int policy_get(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	char *policy;
	bool is_default = false;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	code = CLI_EXIT_OK;
	kms_status st = kms_get_key_policy_info(client, argv[optind], &policy, &is_default, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		/* The document itself when it parses, else as a string. */
		json_t *doc = json_loads(policy, JSON_REJECT_DUPLICATES, NULL);
		code = cli_json_print(cli, json_pack("{s:o, s:o, s:b}", "key_id",
		                                     cli_json_str(argv[optind]), "policy",
		                                     doc ? doc : cli_json_str(policy), "is_default",
		                                     is_default));
	} else if (policy[0]) {
		/* The document alone on stdout, so `policy get > file` stays one. */
		cli_put_lines(cli->out, policy);
		fputc('\n', cli->out);
		if (is_default)
			fprintf(cli->err, "(the key has no policy of its own: this is kmsd's default "
			        "policy, which applies to it)\n");
	} else {
		/* A kmsd that does not send the default it applies. */
		fprintf(cli->err, "(no policy document: kmsd's default policy applies)\n");
	}
	kms_free(policy);
	return code;
}

static int policy_put(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_error err;
	char *policy;
	int code = cli_parse_args(cli, argc, argv, 2, 2);
	if (code != CLI_PROCEED)
		return code;
	if ((code = read_policy(cli, argv[optind + 1], &policy)) != CLI_EXIT_OK)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK) {
		free(policy);
		return code;
	}
	kms_status st = kms_put_key_policy(client, argv[optind], policy, &err);
	kms_client_close(client);
	free(policy);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o, s:b}", "key_id",
		                                     cli_json_str(argv[optind]), "policy_set", 1));
	return done(cli, argv[optind], "policy set", NULL, NULL);
}

static const struct cli_command policy_commands[] = {
	{ .name = "get", .run = policy_get, .args = "KEY",
	  .help = "Print the policy that applies to a key (its own, or kmsd's default)" },
	{ .name = "put", .run = policy_put, .args = "KEY FILE",
	  .help = "Replace a key's policy with the JSON in FILE ('-': stdin)" },
	{ .name = "grant", .run = admin_policy_grant,
	  .args = "KEY --principal P --op OP... [--context-equals k=v]... [--sid SID]",
	  .help = "Add an Allow statement to a key's policy",
	  .details = "  --principal P         a principal name, role:admin|app|auditor, or *\n"
	             "  --op OP               an operation name (encrypt, decrypt, ...) or *;\n"
	             "                        repeat for more\n"
	             "  --context-equals k=v  only when the encryption context holds this pair;\n"
	             "                        repeat for more\n"
	             "  --sid SID             the statement's id (default: the principal)\n" },
	{ .name = "revoke", .run = admin_policy_revoke, .args = "KEY --sid SID",
	  .help = "Remove the statement with that Sid from a key's policy" },
	{ 0 },
};

const struct cli_command admin_key_commands[] = {
	{ .name = "create", .run = key_create,
	  .args = "[--description D] [--spec SPEC] [--usage USAGE] [--alias alias/NAME] "
	          "[--tag k=v]... [--rotation-days N] [--policy FILE] "
	          "[--protection wrapped|hsm-resident] [--per-data-principal]",
	  .help = "Create a key (its material made in the HSM)",
	  .details = "  --description D       free text, at most " CLI_STR(KMS_DESCRIPTION_MAX)
	             " bytes\n"
	             "  --spec SPEC           what the key is; each spec has one usage:\n"
	             "                          AES_256      ENCRYPT_DECRYPT (the default):\n"
	             "                                       kms encrypt, decrypt, data-key\n"
	             "                          HMAC_SHA256  GENERATE_VERIFY_MAC: kms mac,\n"
	             "                                       verify-mac, pseudonym\n"
	             "                          ECC_P256     SIGN_VERIFY: kms sign, verify\n"
	             "                                       (ECDSA P-256 with SHA-256)\n"
	             "                          ED25519      SIGN_VERIFY: kms sign, verify\n"
	             "                                       (Ed25519); always hsm-resident\n"
	             "  --usage USAGE         the spec's own usage (above), which is the\n"
	             "                        default; any other is refused\n"
	             "  --alias alias/NAME    create this alias for the key too\n"
	             "  --tag k=v             a tag; repeat for more\n"
	             "  --rotation-days N     rotate automatically every N days (1.."
	             CLI_STR(KMS_ROTATION_DAYS_MAX) ")\n"
	             "  --policy FILE         JSON policy document (default: kmsd's default)\n"
	             "  --protection P        wrapped (the default): each version stored\n"
	             "                        wrapped under an HSM key-encryption key, any\n"
	             "                        number of keys; hsm-resident: each version a\n"
	             "                        token object in the HSM, at most [keys]\n"
	             "                        max_hsm_resident keys (docs/key-hierarchy.md).\n"
	             "                        AES_256: either; HMAC_SHA256 and ECC_P256:\n"
	             "                        wrapped only; ED25519: hsm-resident only (the\n"
	             "                        default for it)\n"
	             "  --per-data-principal  a sub-key per data principal (the pseudonym in\n"
	             "                        the encryption context's dp), each erasable\n"
	             "                        alone (docs/data-principals.md); AES_256\n"
	             "                        wrapped keys only\n" },
	{ .name = "list", .run = key_list, .args = "[--limit N] [--all] [--page-token T]",
	  .help = "List keys, a page at a time",
	  .details = "  --limit N             keys per page, 1.." CLI_STR(KMS_LIST_LIMIT_MAX)
	             " (default: kmsd's, 100)\n"
	             "  --all                 follow the pages to the end\n"
	             "  --page-token T        start at this page (from a previous list)\n" },
	{ .name = "describe", .run = key_describe, .args = "KEY",
	  .help = "Show a key (KEY is a key id or alias/NAME)" },
	{ .name = "enable", .run = key_enable, .args = "KEY", .help = "Enable a disabled key" },
	{ .name = "disable", .run = key_disable, .args = "KEY",
	  .help = "Disable a key: no operation may use it until it is enabled" },
	{ .name = "rotate", .run = key_rotate, .args = "KEY",
	  .help = "Make a new primary version now (old versions still decrypt and verify)" },
	{ .name = "set-rotation", .run = key_set_rotation, .args = "KEY DAYS",
	  .help = "Rotate automatically every DAYS days (1.." CLI_STR(KMS_ROTATION_DAYS_MAX)
	          "; 0 turns it off)" },
	{ .name = "set-description", .run = key_set_description, .args = "KEY TEXT",
	  .help = "Replace a key's description" },
	{ .name = "schedule-deletion", .run = key_schedule_deletion, .args = "KEY [--days N]",
	  .help = "Destroy a key after N days (" CLI_STR(KMS_DELETION_DAYS_MIN) ".."
	          CLI_STR(KMS_DELETION_DAYS_MAX) ", default 30) unless cancelled",
	  .details = "  --days N              waiting period, " CLI_STR(KMS_DELETION_DAYS_MIN) ".."
	             CLI_STR(KMS_DELETION_DAYS_MAX) " (default 30)\n" },
	{ .name = "cancel-deletion", .run = key_cancel_deletion, .args = "KEY",
	  .help = "Cancel a scheduled deletion (the key stays disabled)" },
	{ .name = "tag", .run = key_tag, .args = "KEY k=v...", .help = "Add or replace tags" },
	{ .name = "untag", .run = key_untag, .args = "KEY k...", .help = "Remove tags" },
	{ .name = "retention", .sub = admin_retention_commands,
	  .help = "A per-data-principal key's retention per purpose" },
	{ .name = "policy", .sub = policy_commands,
	  .help = "Read, replace or edit a key's policy" },
	{ 0 },
};
