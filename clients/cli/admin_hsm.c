/*
 * admin_hsm.c: kms-admin hsm status, hsm kek list, hsm kek rotate.
 *
 * hsm status opens the PKCS#11 module itself (through kms_hsm), so its
 * token report works when kmsd is down, which is when it is most wanted;
 * when it can also reach kmsd (the usual connection flags), it adds kmsd's
 * key-encryption keys (ListKeks: each KEK's state and the versions wrapped
 * under it, which is the re-wrap job's progress). kmsd not reached, or
 * refusing, is a warning: the token report stands on its own.
 */
#include "clients/cli/admin.h"

#include <inttypes.h>
#include <stdlib.h>

#include <kms/keks.h>

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

/* ---- KEKs, as kmsd shows them ---- */

static json_t *json_kek(const kms_kek *k)
{
	return json_pack("{s:I, s:o, s:s, s:I, s:I, s:I}", "id", (json_int_t)k->id,
	                 "hsm_id", cli_json_str(k->hsm_id), "state", kms_kek_state_name(k->state),
	                 "created_at", (json_int_t)k->created_at,
	                 "retired_at", (json_int_t)k->retired_at,
	                 "versions", (json_int_t)k->versions);
}

static json_t *json_keks(const kms_kek_list *l)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < l->n_keks; i++) {
		json_t *k = json_kek(&l->keks[i]);
		if (!k || json_array_append_new(a, k) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static void print_keks(FILE *to, const kms_kek_list *l)
{
	static const char *const headers[] = { "ID", "HSM ID", "STATE", "VERSIONS", "CREATED",
		                               "RETIRED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 6, headers);
	for (size_t i = 0; ok && i < l->n_keks; i++) {
		const kms_kek *k = &l->keks[i];
		char id[16], versions[24], created[CLI_TIME_MAX], retired[CLI_TIME_MAX];
		snprintf(id, sizeof id, "%" PRIu32, k->id);
		snprintf(versions, sizeof versions, "%" PRIu64, k->versions);
		const char *cells[] = { id, k->hsm_id, kms_kek_state_name(k->state), versions,
			                cli_time(k->created_at, created),
			                cli_time(k->retired_at, retired) };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

/* After a KEK list: a draining KEK means a re-wrap in progress. */
static void print_rewrap_note(FILE *to, const kms_kek_list *l)
{
	for (size_t i = 0; i < l->n_keks; i++)
		if (l->keks[i].state == KMS_KEK_DRAINING)
			fprintf(to, "re-wrap: %" PRIu64 " key version(s) still wrapped under %s; "
			        "it is retired when that reaches 0\n", l->keks[i].versions,
			        l->keks[i].hsm_id);
}

/* ---- hsm status ---- */

/* The local token report, as text. */
static void print_token(struct cli *cli, const hsm_config *config, const hsm_token_info *info)
{
	cli_field(cli->out, "label", info->label);
	cli_field(cli->out, "serial", info->serial);
	cli_field(cli->out, "model", info->model);
	cli_field(cli->out, "manufacturer", info->manufacturer);
	cli_field_fmt(cli->out, "slot", "%lu", info->slot_id);
	cli_field(cli->out, "initialized", yes_no(info->initialized));
	cli_field(cli->out, "login required", yes_no(info->login_required));
	cli_field(cli->out, "logged in", config->pin_file ? yes_no(info->logged_in)
	                                                  : "no (no --pin-file)");
	if (info->logged_in)
		cli_field_fmt(cli->out, "objects", "%lu", info->objects);
	else
		cli_field(cli->out, "objects", "- (log in to count them)");
}

/* kmsd's KEKs, if kmsd can be reached (client: NULL when it could not be
 * opened, said already) and lets the caller list them; a warning on stderr
 * otherwise (the token report stands alone). */
static bool status_keks(struct cli *cli, kms_client *client, kms_kek_list *keks)
{
	kms_error err;
	if (!client) {
		fprintf(cli->err, "%s: warning: KEKs not shown: kmsd cannot be reached with the "
		        "connection flags (see above)\n", cli->prog);
		return false;
	}
	kms_status st = kms_list_keks(client, keks, &err);
	if (st == KMS_OK)
		return true;
	fprintf(cli->err, "%s: warning: KEKs not shown: ", cli->prog);
	if (err.origin == KMS_ERROR_SERVER)
		fprintf(cli->err, "%s: ", kms_status_name(st));
	cli_put_clean(cli->err, err.message[0] ? err.message : kms_status_name(st));
	if (st == KMS_ACCESS_DENIED)
		fprintf(cli->err, " (listing KEKs needs an admin or auditor principal: give its "
		        "--credentials)");
	fputc('\n', cli->err);
	return false;
}

static int hsm_status(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, OPT_MODULE },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "pin-file", required_argument, NULL, OPT_PIN_FILE },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
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
	/* Bad connection flags are a usage error; kmsd not reached is not. */
	kms_client *client = NULL;
	code = cli_connect(cli, &client);
	if (code == CLI_EXIT_USAGE)
		return code;
	kms_error_clear();
	kms_status st = hsm_token_status(&config, &info);
	if (st != KMS_OK) {
		fprintf(cli->err, "%s: %s: %s\n", cli->prog, kms_status_name(st),
		        kms_error_message()[0] ? kms_error_message() : "the HSM said no");
		kms_client_close(client);
		return st == KMS_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_REFUSED;
	}
	kms_kek_list keks = { 0 };
	bool reached = status_keks(cli, client, &keks);
	kms_client_close(client);
	if (cli->json) {
		json_t *j = json_pack(
			"{s:o, s:o, s:o, s:o, s:I, s:b, s:b, s:b, s:I, s:b}",
			"label", cli_json_str(info.label), "serial", cli_json_str(info.serial),
			"model", cli_json_str(info.model),
			"manufacturer", cli_json_str(info.manufacturer),
			"slot", (json_int_t)info.slot_id, "initialized", info.initialized,
			"login_required", info.login_required, "logged_in", info.logged_in,
			"objects", (json_int_t)info.objects, "kmsd_reached", reached);
		if (j && reached) {
			json_t *a = json_keks(&keks);
			if (!a || json_object_set_new(j, "keks", a) != 0) {
				json_decref(j);
				j = NULL;
			}
		}
		kms_kek_list_free(&keks);
		return cli_json_print(cli, j);
	}
	print_token(cli, &config, &info);
	if (reached) {
		fprintf(cli->out, "\nkey-encryption keys (kmsd):\n");
		print_keks(cli->out, &keks);
		print_rewrap_note(cli->out, &keks);
	}
	kms_kek_list_free(&keks);
	return CLI_EXIT_OK;
}

/* ---- hsm kek list | rotate ---- */

static int kek_list(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_kek_list keks;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_list_keks(client, &keks, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		code = cli_json_print(cli, json_pack("{s:o*}", "keks", json_keks(&keks)));
	} else {
		print_keks(cli->out, &keks);
		print_rewrap_note(cli->out, &keks);
		code = CLI_EXIT_OK;
	}
	kms_kek_list_free(&keks);
	return code;
}

static int kek_rotate(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_kek kek;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	kms_status st = kms_rotate_kek(client, &kek, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json)
		return cli_json_print(cli, json_pack("{s:o*}", "kek", json_kek(&kek)));
	cli_field(cli->out, "new KEK", kek.hsm_id);
	cli_field_fmt(cli->out, "id", "%" PRIu32, kek.id);
	cli_field(cli->out, "state", kms_kek_state_name(kek.state));
	fprintf(cli->out, "the previous KEK is draining: kmsd re-wraps its key versions in the "
	        "background; kms-admin hsm kek list shows the progress\n");
	return CLI_EXIT_OK;
}

static const struct cli_command admin_hsm_kek_commands[] = {
	{ .name = "list", .run = kek_list,
	  .help = "List kmsd's key-encryption keys: state, versions wrapped under each" },
	{ .name = "rotate", .run = kek_rotate,
	  .help = "Make a new KEK current; the old one drains (re-wrapped in the background)",
	  .details = "  Refused (FAILED_PRECONDITION) while the previous rotation's KEK is still\n"
	             "  draining: wait until kms-admin hsm kek list shows it RETIRED.\n" },
	{ 0 },
};

const struct cli_command admin_hsm_commands[] = {
	{ .name = "status", .run = hsm_status,
	  .args = "[--module PATH] [--token LABEL] [--pin-file FILE]",
	  .help = "Show the HSM token (locally: works without kmsd) and kmsd's KEKs",
	  .details = "  --module PATH         PKCS#11 module ($" ENV_MODULE "; default SoftHSMv2)\n"
	             "  --token LABEL         token label ($" ENV_TOKEN ")\n"
	             "  --pin-file FILE       user PIN, mode 0600, to log in and count objects\n"
	             "                        ($" ENV_PIN_FILE ")\n"
	             "  When kmsd can be reached (the connection flags), the report adds its\n"
	             "  key-encryption keys: state, versions wrapped under each (a draining\n"
	             "  KEK's count falling to 0 is the re-wrap's progress), created, retired.\n"
	             "  kmsd not reached is a warning, not a failure.\n" },
	{ .name = "kek", .sub = admin_hsm_kek_commands,
	  .help = "kmsd's key-encryption keys (list, rotate)" },
	{ 0 },
};
