/*
 * admin_format.c: how kms-admin shows keys and aliases, as aligned text
 * and as JSON. Times are unix seconds in JSON (0: none) and UTC ISO 8601
 * in text.
 */
#include "clients/cli/admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON ---- */

/* Appends, noting a failure in *ok (the value is released either way). */
static void append(json_t *array, json_t *value, bool *ok)
{
	if (!value || json_array_append_new(array, value) != 0)
		*ok = false;
}

json_t *admin_json_key(const kms_key_metadata *md)
{
	bool ok = true;
	json_t *versions = json_array();
	json_t *aliases = json_array();
	json_t *tags = json_object();

	for (size_t i = 0; versions && i < md->n_versions; i++)
		append(versions,
		       json_pack("{s:I, s:I, s:I, s:s}",
		                 "version", (json_int_t)md->versions[i].version,
		                 "created_at", (json_int_t)md->versions[i].created_at,
		                 /* Reservations (docs/gcm-limits.md), not uses. */
		                 "gcm_reserved", (json_int_t)md->versions[i].encryptions,
		                 "kek", md->versions[i].kek),
		       &ok);
	for (size_t i = 0; aliases && i < md->n_aliases; i++)
		append(aliases, cli_json_str(md->aliases[i]), &ok);
	for (size_t i = 0; tags && i < md->n_tags; i++) {
		json_t *key = cli_json_str(md->tags[i].key);
		if (!key || json_object_set_new(tags, json_string_value(key),
		                                cli_json_str(md->tags[i].value)) != 0)
			ok = false;
		json_decref(key);
	}
	if (!ok) {
		json_decref(versions);
		json_decref(aliases);
		json_decref(tags);
		return NULL;
	}
	/* json_pack releases every "o" value itself if it fails. */
	return json_pack("{s:o, s:o, s:s, s:s, s:s, s:s, s:b, s:I, s:o, s:I, s:I, s:I, s:I, s:o, "
	                 "s:o, s:o}",
	                 "key_id", cli_json_str(md->key_id),
	                 "description", cli_json_str(md->description),
	                 "key_spec", kms_key_spec_name(md->key_spec),
	                 "key_usage", kms_key_usage_name(md->key_usage),
	                 "key_state", kms_key_state_name(md->key_state),
	                 "protection", kms_key_protection_name(md->protection),
	                 "per_data_principal", (int)md->per_data_principal,
	                 "primary_version", (json_int_t)md->primary_version,
	                 "versions", versions,
	                 "rotation_period_days", (json_int_t)md->rotation_period_days,
	                 "created_at", (json_int_t)md->created_at,
	                 "next_rotation_at", (json_int_t)md->next_rotation_at,
	                 "deletion_date", (json_int_t)md->deletion_date,
	                 "region", cli_json_str(md->region),
	                 "aliases", aliases,
	                 "tags", tags);
}

json_t *admin_json_keys(const kms_key_metadata *keys, size_t n, const char *next_page_token)
{
	bool ok = true;
	json_t *array = json_array();
	for (size_t i = 0; array && i < n; i++)
		append(array, admin_json_key(&keys[i]), &ok);
	if (!ok) {
		json_decref(array);
		return NULL;
	}
	return json_pack("{s:o, s:o}", "keys", array, "next_page_token",
	                 cli_json_str(next_page_token ? next_page_token : ""));
}

json_t *admin_json_aliases(const kms_alias *aliases, size_t n, const char *next_page_token)
{
	bool ok = true;
	json_t *array = json_array();
	for (size_t i = 0; array && i < n; i++)
		append(array,
		       json_pack("{s:o, s:o, s:I}",
		                 "alias_name", cli_json_str(aliases[i].alias_name),
		                 "target_key_id", cli_json_str(aliases[i].target_key_id),
		                 "created_at", (json_int_t)aliases[i].created_at),
		       &ok);
	if (!ok) {
		json_decref(array);
		return NULL;
	}
	return json_pack("{s:o, s:o}", "aliases", array, "next_page_token",
	                 cli_json_str(next_page_token ? next_page_token : ""));
}

/* ---- text ---- */

/* "a, b, c" into buf (truncated with "..." when it does not fit). */
static const char *join_aliases(const kms_key_metadata *md, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < md->n_aliases; i++) {
		int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", md->aliases[i]);
		if (n < 0 || (size_t)n >= cap - used) {
			if (cap > 4)
				memcpy(buf + cap - 4, "...", 4);
			break;
		}
		used += (size_t)n;
	}
	return buf;
}

static const char *rotation_text(const kms_key_metadata *md, char *buf, size_t cap)
{
	char next[CLI_TIME_MAX];
	if (md->rotation_period_days == 0)
		snprintf(buf, cap, "off");
	else if (md->next_rotation_at)
		snprintf(buf, cap, "every %" PRIu32 " days, next %s", md->rotation_period_days,
		         cli_time(md->next_rotation_at, next));
	else
		snprintf(buf, cap, "every %" PRIu32 " days", md->rotation_period_days);
	return buf;
}

void admin_print_key(FILE *to, const kms_key_metadata *md)
{
	char when[CLI_TIME_MAX], text[512];

	cli_field(to, "key id", md->key_id);
	cli_field(to, "description", md->description);
	cli_field(to, "state", kms_key_state_name(md->key_state));
	cli_field(to, "spec", kms_key_spec_name(md->key_spec));
	cli_field(to, "usage", kms_key_usage_name(md->key_usage));
	cli_field(to, "protection", kms_key_protection_name(md->protection));
	if (md->per_data_principal)
		cli_field(to, "per data principal", "yes: a sub-key per dp, erasable alone");
	cli_field(to, "region", md->region);
	cli_field_fmt(to, "primary version", "%" PRIu32, md->primary_version);
	/* GCM reservations are an AES key's alone (docs/gcm-limits.md). */
	bool aes = md->key_spec == KMS_KEY_SPEC_AES_256 ||
	           md->key_spec == KMS_KEY_SPEC_UNSPECIFIED;
	for (size_t i = 0; i < md->n_versions; i++) {
		char gcm[48] = "";
		if (aes)
			snprintf(gcm, sizeof gcm, "  %" PRIu64 " GCM uses reserved",
			         md->versions[i].encryptions);
		cli_field_fmt(to, i == 0 ? "versions" : "", "v%" PRIu32 "  created %s%s%s%s%s",
		              md->versions[i].version, cli_time(md->versions[i].created_at, when),
		              gcm, md->versions[i].kek[0] ? "  wrapped under " : "",
		              md->versions[i].kek,
		              md->versions[i].version == md->primary_version ? "  (primary)" : "");
	}
	cli_field(to, "rotation", rotation_text(md, text, sizeof text));
	cli_field(to, "created", cli_time(md->created_at, when));
	if (md->deletion_date)
		cli_field(to, "deletion date", cli_time(md->deletion_date, when));
	cli_field(to, "aliases", md->n_aliases ? join_aliases(md, text, sizeof text) : "-");
	if (md->n_tags == 0)
		cli_field(to, "tags", "-");
	for (size_t i = 0; i < md->n_tags; i++) {
		snprintf(text, sizeof text, "%s=%s", md->tags[i].key, md->tags[i].value);
		cli_field(to, i == 0 ? "tags" : "", text);
	}
}

void admin_print_keys(FILE *to, const kms_key_metadata *keys, size_t n)
{
	static const char *const headers[] = { "KEY ID", "STATE", "SPEC", "PRIMARY",
		                               "ROTATION", "CREATED", "ALIASES",
		                               "DESCRIPTION" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 8, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char primary[16], rotation[64], created[CLI_TIME_MAX], aliases[128];
		snprintf(primary, sizeof primary, "v%" PRIu32, keys[i].primary_version);
		if (keys[i].rotation_period_days)
			snprintf(rotation, sizeof rotation, "%" PRIu32 "d",
			         keys[i].rotation_period_days);
		else
			snprintf(rotation, sizeof rotation, "off");
		const char *cells[] = {
			keys[i].key_id, kms_key_state_name(keys[i].key_state),
			kms_key_spec_name(keys[i].key_spec), primary, rotation,
			cli_time(keys[i].created_at, created),
			keys[i].n_aliases ? join_aliases(&keys[i], aliases, sizeof aliases) : "-",
			keys[i].description,
		};
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

void admin_print_aliases(FILE *to, const kms_alias *aliases, size_t n)
{
	static const char *const headers[] = { "ALIAS", "KEY ID", "CREATED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 3, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char created[CLI_TIME_MAX];
		const char *cells[] = { aliases[i].alias_name, aliases[i].target_key_id,
			                cli_time(aliases[i].created_at, created) };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

int admin_show_key(struct cli *cli, const kms_key_metadata *md)
{
	if (cli->json)
		return cli_json_print(cli, admin_json_key(md));
	admin_print_key(cli->out, md);
	return CLI_EXIT_OK;
}
