/*
 * admin_report.c: kms-admin report residency: where every key lives, for a
 * regulator or an auditor, from what kmsd says of itself (Health), its
 * key-encryption keys (ListKeks), every key and version (ListKeys, all
 * pages) and its audit log's signed checkpoint (GetCheckpoint). Needs a
 * principal that may read all of these (admin, or auditor).
 */
#include "clients/cli/admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <kms/keks.h>

void admin_residency_free(struct admin_residency *r)
{
	kms_health_free(&r->health);
	kms_kek_list_free(&r->keks);
	kms_checkpoint_free(&r->checkpoint);
	admin_gathered_free(&r->keys, &admin_key_list_kind);
}

int admin_residency_fetch(struct cli *cli, kms_client *client, struct admin_residency *r)
{
	kms_error err;
	if (kms_health_check(client, &r->health, &err) != KMS_OK ||
	    kms_list_keks(client, &r->keks, &err) != KMS_OK ||
	    kms_get_checkpoint(client, &r->checkpoint, &err) != KMS_OK)
		return cli_report(cli, &err);
	size_t n = strcspn(r->checkpoint.checkpoint, "\n");
	snprintf(r->origin, sizeof r->origin, "%.*s", (int)n, r->checkpoint.checkpoint);
	struct admin_pages pages = { .all = true, .limit = KMS_LIST_LIMIT_MAX };
	int code = admin_list_read(cli, client, &admin_key_list_kind, NULL, &pages, &r->keys);
	free(pages.token);
	return code;
}

static json_t *versions_json(const kms_key_metadata *k)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < k->n_versions; i++)
		json_array_append_new(a, json_pack("{s:I, s:o}", "version",
		                                   (json_int_t)k->versions[i].version, "kek",
		                                   cli_json_str(k->versions[i].kek)));
	return a;
}

/* Where kmsd keeps its state: "" when kmsd did not say (an older kmsd, or
 * a principal that is neither admin nor auditor). */
static json_t *store_json(const kms_health *h)
{
	return json_pack("{s:o, s:o}", "data_dir", cli_json_str(h->data_dir), "path",
	                 cli_json_str(h->store_path));
}

json_t *admin_residency_json(const struct admin_residency *r)
{
	const kms_key_metadata *keys = r->keys.items;
	json_t *keks = json_array(), *list = json_array();
	for (size_t i = 0; keks && i < r->keks.n_keks; i++)
		json_array_append_new(keks, json_pack("{s:I, s:s, s:s, s:I}", "id",
		                                      (json_int_t)r->keks.keks[i].id, "hsm_id",
		                                      r->keks.keks[i].hsm_id, "state",
		                                      kms_kek_state_name(r->keks.keks[i].state),
		                                      "versions", (json_int_t)r->keks.keks[i].versions));
	for (size_t i = 0; list && i < r->keys.n; i++)
		json_array_append_new(list, json_pack(
			"{s:o, s:s, s:s, s:s, s:o, s:o}", "key_id", cli_json_str(keys[i].key_id),
			"spec", kms_key_spec_name(keys[i].key_spec), "state",
			kms_key_state_name(keys[i].key_state), "protection",
			kms_key_protection_name(keys[i].protection), "region",
			cli_json_str(keys[i].region), "versions", versions_json(&keys[i])));
	return json_pack(
		"{s:o, s:{s:o, s:o, s:o, s:o, s:b}, s:o, s:o, s:{s:o, s:I}, s:o}",
		"region", cli_json_str(r->health.region),
		"hsm", "token_label", cli_json_str(r->health.token_label),
		"manufacturer", cli_json_str(r->health.hsm_manufacturer),
		"model", cli_json_str(r->health.hsm_model),
		"serial", cli_json_str(r->health.hsm_serial), "pinned", r->health.hsm_pinned,
		"keks", keks, "store", store_json(&r->health),
		"audit", "origin", cli_json_str(r->origin), "entries",
		(json_int_t)r->checkpoint.tree_size,
		"keys", list);
}

static void print_text(struct cli *cli, const struct admin_residency *r)
{
	const kms_key_metadata *keys = r->keys.items;
	size_t wrapped = 0, resident = 0, versions = 0;
	cli_field(cli->out, "region", r->health.region);
	cli_field_fmt(cli->out, "hsm token", "\"%s\" %s|%s|%s (%s)", r->health.token_label,
	              r->health.hsm_manufacturer, r->health.hsm_model, r->health.hsm_serial,
	              r->health.hsm_pinned ? "pinned" : "NOT pinned: see [hsm] pinned");
	for (size_t i = 0; i < r->keks.n_keks; i++)
		cli_field_fmt(cli->out, "kek", "%s %s, %" PRIu64 " versions", r->keks.keks[i].hsm_id,
		              kms_kek_state_name(r->keks.keks[i].state), r->keks.keks[i].versions);
	cli_field(cli->out, "store", r->health.store_path[0]
	                                      ? r->health.store_path
	                                      : "(kmsd tells only an admin or an auditor)");
	if (r->health.data_dir[0])
		cli_field(cli->out, "data dir", r->health.data_dir);
	cli_field_fmt(cli->out, "audit log", "%s, %" PRIu64 " entries (signed checkpoint)",
	              r->origin, r->checkpoint.tree_size);
	for (size_t i = 0; i < r->keys.n; i++) {
		const kms_key_metadata *k = &keys[i];
		bool is_wrapped = k->protection == KMS_KEY_PROTECTION_WRAPPED;
		wrapped += is_wrapped;
		resident += !is_wrapped;
		fprintf(cli->out, "%s  %-11s %-16s %-12s %s\n", k->key_id, kms_key_spec_name(k->key_spec),
		        kms_key_state_name(k->key_state), kms_key_protection_name(k->protection),
		        k->region);
		for (size_t v = 0; v < k->n_versions; v++, versions++)
			fprintf(cli->out, "  v%-6" PRIu32 " %s\n", k->versions[v].version,
			        k->versions[v].kek[0] ? k->versions[v].kek
			        : is_wrapped       ? "(destroyed)"
			                           : "(token object in the HSM above)");
	}
	cli_field_fmt(cli->out, "keys", "%zu (%zu wrapped, %zu hsm-resident), %zu versions",
	              r->keys.n, wrapped, resident, versions);
}

static int report_residency(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	struct admin_residency r;
	memset(&r, 0, sizeof r);
	code = admin_residency_fetch(cli, client, &r);
	kms_client_close(client);
	if (code == CLI_EXIT_OK) {
		if (cli->json)
			code = cli_json_print(cli, admin_residency_json(&r));
		else
			print_text(cli, &r);
	}
	admin_residency_free(&r);
	return code;
}

const struct cli_command admin_report_commands[] = {
	{ .name = "residency", .run = report_residency,
	  .help = "Where every key lives: region, HSM token (pinned or not), KEKs, each "
	          "key's versions, the store's location, the audit log" },
	{ .name = "evidence", .run = admin_report_evidence,
	  .args = "(--since T1 --until T2 -o DIR [--log LOGDIR] | --check DIR) "
	          "[--key KEY | --key-file FILE]",
	  .help = "Write an evidence pack an auditor verifies offline: the residency report, "
	          "keys, consent uses, erasures, denials, the log and its verifier key; or "
	          "check one",
	  .details =
		"  --since T1, --until T2\n"
		"                        the window, RFC 3339 UTC (2026-11-28T00:00:00Z)\n"
		"  -o, --out DIR         a new directory for the pack\n"
		"  --log LOGDIR          the log to copy (see 'audit export'); default:\n"
		"                        kmsd's own <data_dir>/audit/public on this host\n"
		"  --key KEY             the log's verifier key (default: $KMS_AUDIT_KEY,\n"
		"                        else the one kmsd sends, said on stderr)\n"
		"  --key-file FILE       read the verifier key from FILE\n"
		"\n"
		"DIR is a verified copy of the whole audit log (checkpoint, tile/) with\n"
		"its verifier key, residency.json, keys.json, consent-uses.json,\n"
		"erasures.json, denials.json and a README.md saying how to verify it:\n"
		"'kms-admin audit verify DIR --key-file DIR/verifier-key'. Needs an\n"
		"admin or an auditor. Exit 1 when the log does not verify.\n"
		"\n"
		"  --check DIR           offline: verify DIR's log copy and recompute its\n"
		"                        consent-uses.json, erasures.json and denials.json\n"
		"                        for the window they name; exit 1, naming the file,\n"
		"                        when one does not match the verified log\n" },
	{ 0 },
};
