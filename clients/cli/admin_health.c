/*
 * admin_health.c: kms-admin health.
 */
#include "clients/cli/admin.h"

#include <inttypes.h>

int admin_health(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	kms_health h;
	kms_error err;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	code = CLI_EXIT_OK;
	kms_status st = kms_health_check(client, &h, &err);
	kms_client_close(client);
	if (st != KMS_OK)
		return cli_report(cli, &err);
	if (cli->json) {
		code = cli_json_print(cli, json_pack(
			"{s:b, s:o, s:o, s:I, s:o, s:o, s:I, s:o, s:{s:o, s:o, s:o, s:b}, s:o, s:o}",
			"hsm_ok", h.hsm_ok, "region", cli_json_str(h.region),
			"version", cli_json_str(h.version),
			"uptime_seconds", (json_int_t)h.uptime_seconds,
			"token_label", cli_json_str(h.token_label),
			"hsm_message", cli_json_str(h.hsm_message),
			"audit_size", (json_int_t)h.audit_size,
			"principal", cli_json_str(h.principal),
			"hsm_token", "manufacturer", cli_json_str(h.hsm_manufacturer),
			"model", cli_json_str(h.hsm_model), "serial", cli_json_str(h.hsm_serial),
			"pinned", h.hsm_pinned, "data_dir", cli_json_str(h.data_dir),
			"store_path", cli_json_str(h.store_path)));
	} else {
		cli_field(cli->out, "hsm", h.hsm_ok ? "ok" : "NOT OK");
		if (!h.hsm_ok)
			cli_field(cli->out, "hsm message", h.hsm_message);
		cli_field(cli->out, "token", h.token_label);
		if (h.hsm_serial && h.hsm_serial[0])
			cli_field_fmt(cli->out, "hsm token", "%s|%s|%s (%s)", h.hsm_manufacturer,
			              h.hsm_model, h.hsm_serial,
			              h.hsm_pinned ? "pinned" : "not pinned: see [hsm] pinned");
		cli_field(cli->out, "region", h.region);
		cli_field(cli->out, "version", h.version);
		cli_field_fmt(cli->out, "uptime", "%" PRIu64 " s", h.uptime_seconds);
		cli_field_fmt(cli->out, "audit entries", "%" PRIu64, h.audit_size);
		cli_field(cli->out, "principal", h.principal);
		/* kmsd tells only admins and auditors where its state is. */
		if (h.data_dir[0])
			cli_field(cli->out, "data dir", h.data_dir);
		if (h.store_path[0])
			cli_field(cli->out, "store", h.store_path);
	}
	/* kmsd answered, but an HSM it cannot use is a failed health check. */
	if (code == CLI_EXIT_OK && !h.hsm_ok) {
		fprintf(cli->err, "%s: HSM_UNAVAILABLE: ", cli->prog);
		cli_put_clean(cli->err, h.hsm_message[0] ? h.hsm_message : "kmsd's HSM is not ok");
		fputc('\n', cli->err);
		code = CLI_EXIT_REFUSED;
	}
	kms_health_free(&h);
	return code;
}
