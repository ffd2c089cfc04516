/*
 * admin_hsm.c: kms-admin hsm status. Local: it opens the PKCS#11 module
 * itself (through kms_hsm) and never talks to kmsd, so it works when kmsd
 * is down, which is when it is most wanted.
 */
#include "clients/cli/admin.h"

#include <stdlib.h>

#include "common/error.h"
#include "hsm/hsm.h"

#define ENV_MODULE "KMS_HSM_MODULE"
#define ENV_TOKEN "KMS_HSM_TOKEN"
#define ENV_PIN_FILE "KMS_HSM_PIN_FILE"

enum {
	OPT_MODULE = CLI_OPT_COMMAND,
	OPT_TOKEN,
	OPT_PIN_FILE,
};

static const char *env_default(const char *value, const char *name)
{
	const char *env;
	if (value)
		return value;
	env = getenv(name);
	return env && env[0] ? env : NULL;
}

static const char *yes_no(bool b)
{
	return b ? "yes" : "no";
}

static int hsm_status(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, OPT_MODULE },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "pin-file", required_argument, NULL, OPT_PIN_FILE },
		CLI_BASE_OPTIONS, { 0 },
	};
	hsm_config config = { 0 };
	hsm_token_info info = { 0 };
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		switch (opt) {
		case OPT_MODULE:
			config.module_path = optarg;
			break;
		case OPT_TOKEN:
			config.token_label = optarg;
			break;
		case OPT_PIN_FILE:
			config.pin_file = optarg;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 0)) != CLI_PROCEED)
		return code;
	config.module_path = env_default(config.module_path, ENV_MODULE);
	config.token_label = env_default(config.token_label, ENV_TOKEN);
	config.pin_file = env_default(config.pin_file, ENV_PIN_FILE);
	if (!config.token_label)
		return cli_usage_error(cli, "which token? --token LABEL or $%s", ENV_TOKEN);
	kms_error_clear();
	kms_status st = hsm_token_status(&config, &info);
	if (st != KMS_OK) {
		fprintf(cli->err, "%s: %s: %s\n", cli->prog, kms_status_name(st),
		        kms_error_message()[0] ? kms_error_message() : "the HSM said no");
		return st == KMS_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_REFUSED;
	}
	if (cli->json)
		return cli_json_print(cli, json_pack(
			"{s:o, s:o, s:o, s:o, s:I, s:b, s:b, s:b, s:I}",
			"label", cli_json_str(info.label), "serial", cli_json_str(info.serial),
			"model", cli_json_str(info.model),
			"manufacturer", cli_json_str(info.manufacturer),
			"slot", (json_int_t)info.slot_id, "initialized", info.initialized,
			"login_required", info.login_required, "logged_in", info.logged_in,
			"objects", (json_int_t)info.objects));
	cli_field(cli->out, "label", info.label);
	cli_field(cli->out, "serial", info.serial);
	cli_field(cli->out, "model", info.model);
	cli_field(cli->out, "manufacturer", info.manufacturer);
	cli_field_fmt(cli->out, "slot", "%lu", info.slot_id);
	cli_field(cli->out, "initialized", yes_no(info.initialized));
	cli_field(cli->out, "login required", yes_no(info.login_required));
	cli_field(cli->out, "logged in", config.pin_file ? yes_no(info.logged_in)
	                                                 : "no (no --pin-file)");
	if (info.logged_in)
		cli_field_fmt(cli->out, "objects", "%lu", info.objects);
	else
		cli_field(cli->out, "objects", "- (log in to count them)");
	return CLI_EXIT_OK;
}

const struct cli_command admin_hsm_commands[] = {
	{ .name = "status", .run = hsm_status, .local = true,
	  .args = "[--module PATH] [--token LABEL] [--pin-file FILE]",
	  .help = "Show the HSM token (local: does not need kmsd)",
	  .details = "  --module PATH         PKCS#11 module ($" ENV_MODULE "; default SoftHSMv2)\n"
	             "  --token LABEL         token label ($" ENV_TOKEN ")\n"
	             "  --pin-file FILE       user PIN, mode 0600, to log in and count objects\n"
	             "                        ($" ENV_PIN_FILE ")\n" },
	{ 0 },
};
