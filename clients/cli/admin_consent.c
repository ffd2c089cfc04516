/*
 * admin_consent.c: kms-admin consent-manager add|list|remove and kms-admin
 * consent import|list|show|pause|resume|revoke (docs/consent.md).
 *
 * The consent operations have no typed calls in libkmsclient yet: these
 * commands build their requests and send them through kms/client_raw.h's
 * kms_client_call, with the same connection, signing and errors as every
 * other command.
 */
#include "clients/cli/admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <kms/client_raw.h>

enum {
	OPT_JWK = CLI_OPT_COMMAND,
	OPT_DP_KEY,
	OPT_PRINCIPAL,
	OPT_MANAGER,
	OPT_DP,
	OPT_PURPOSE,
	OPT_STATUS,
	OPT_ARTEFACT_OUT,
};

#define JWK_FILE_MAX (16 * 1024)
#define ARTEFACT_FILE_MAX (64 * 1024)
#define CONSENT_PAGES_MAX 10000

/* Sends req; on success *resp holds the answer (kms_response_free). */
static int call(struct cli *cli, kms_client *client, Kms__Request *req, Kms__Response **resp)
{
	kms_error err;
	*resp = NULL;
	if (kms_client_call(client, req, resp, &err) != KMS_OK) {
		kms_response_free(*resp);
		*resp = NULL;
		return cli_report(cli, &err);
	}
	return CLI_EXIT_OK;
}

/* ---- output ---- */

static json_t *json_manager(const Kms__ConsentManager *m)
{
	json_error_t jerr;
	json_t *jwk = json_loads(m->jwk, 0, &jerr);
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:b, s:I, s:I, s:o}", "id", cli_json_str(m->id),
	                 "kid", cli_json_str(m->kid), "jwk", jwk ? jwk : cli_json_str(m->jwk),
	                 "dp_key_id", cli_json_str(m->dp_key_id), "principal",
	                 cli_json_str(m->principal), "removed", m->removed, "created_at",
	                 (json_int_t)m->created_at, "removed_at", (json_int_t)m->removed_at,
	                 "created_by", cli_json_str(m->created_by));
}

static void print_managers(FILE *to, Kms__ConsentManager *const *ms, size_t n)
{
	static const char *const headers[] = { "ID", "KID", "DP KEY", "PRINCIPAL", "STATE",
		                               "CREATED" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 6, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char created[CLI_TIME_MAX];
		const char *cells[] = { ms[i]->id, ms[i]->kid, ms[i]->dp_key_id,
			                ms[i]->principal[0] ? ms[i]->principal : "-",
			                ms[i]->removed ? "removed" : "active",
			                cli_time(ms[i]->created_at, created) };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static json_t *json_consent(const Kms__Consent *c)
{
	char digest[65] = "";
	for (size_t i = 0; i < c->artefact_sha256.len && i < 32; i++)
		snprintf(digest + 2 * i, 3, "%02x", c->artefact_sha256.data[i]);
	json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:I, s:o}", "id",
	                      cli_json_str(c->id), "manager", cli_json_str(c->manager),
	                      "data_principal", cli_json_str(c->data_principal), "purpose",
	                      cli_json_str(c->purpose), "fetch_type", cli_json_str(c->fetch_type),
	                      "consent_start", (json_int_t)c->consent_start, "consent_expiry",
	                      (json_int_t)c->consent_expiry, "data_life_end",
	                      (json_int_t)c->data_life_end, "frequency_unit",
	                      cli_json_str(c->frequency_unit), "frequency_value",
	                      (json_int_t)c->frequency_value, "status", cli_json_str(c->status));
	if (o && json_object_update_new(o, json_pack("{s:I, s:o, s:I, s:I, s:o, s:s}", "status_at",
	                                             (json_int_t)c->status_at, "status_by",
	                                             cli_json_str(c->status_by), "uses",
	                                             (json_int_t)c->uses, "imported_at",
	                                             (json_int_t)c->imported_at, "imported_by",
	                                             cli_json_str(c->imported_by),
	                                             "artefact_sha256", digest)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void print_consents(FILE *to, Kms__Consent *const *cs, size_t n)
{
	static const char *const headers[] = { "ID", "MANAGER", "PURPOSE", "STATUS", "FETCH",
		                               "USES", "EXPIRES", "DATA PRINCIPAL" };
	struct cli_table t;
	bool ok = cli_table_init(&t, 8, headers);
	for (size_t i = 0; ok && i < n; i++) {
		char uses[24], expires[CLI_TIME_MAX];
		snprintf(uses, sizeof uses, "%" PRId64, cs[i]->uses);
		const char *cells[] = { cs[i]->id, cs[i]->manager, cs[i]->purpose, cs[i]->status,
			                cs[i]->fetch_type, uses,
			                cli_time(cs[i]->consent_expiry, expires),
			                cs[i]->data_principal };
		ok = cli_table_add(&t, cells);
	}
	if (ok)
		cli_table_print(&t, to);
	else
		fprintf(to, "(out of memory)\n");
	cli_table_free(&t);
}

static void print_consent(FILE *to, const Kms__Consent *c)
{
	char t1[CLI_TIME_MAX], t2[CLI_TIME_MAX], t3[CLI_TIME_MAX], t4[CLI_TIME_MAX],
		t5[CLI_TIME_MAX];
	cli_field(to, "id", c->id);
	cli_field(to, "manager", c->manager);
	cli_field(to, "data principal", c->data_principal);
	cli_field(to, "purpose", c->purpose);
	cli_field(to, "status", c->status);
	cli_field_fmt(to, "status changed", "%s by %s", cli_time(c->status_at, t1), c->status_by);
	cli_field(to, "fetch type", c->fetch_type);
	cli_field(to, "valid from", cli_time(c->consent_start, t2));
	cli_field(to, "valid until", cli_time(c->consent_expiry, t3));
	cli_field(to, "data life ends", c->data_life_end ? cli_time(c->data_life_end, t4) : "never");
	if (!strcmp(c->frequency_unit, "INF"))
		cli_field(to, "frequency", "no limit");
	else
		cli_field_fmt(to, "frequency", "%" PRId64 " per %s", c->frequency_value,
		              c->frequency_unit);
	cli_field_fmt(to, "uses", "%" PRId64, c->uses);
	cli_field_fmt(to, "imported", "%s by %s", cli_time(c->imported_at, t5), c->imported_by);
}

static int show_consent(struct cli *cli, const Kms__Consent *c)
{
	if (cli->json)
		return cli_json_print(cli, json_consent(c));
	print_consent(cli->out, c);
	return CLI_EXIT_OK;
}

/* ---- consent-manager ---- */

static int cm_add(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "jwk", required_argument, NULL, OPT_JWK },
		{ "dp-key", required_argument, NULL, OPT_DP_KEY },
		{ "principal", required_argument, NULL, OPT_PRINCIPAL },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *jwk_path = NULL, *dp_key = NULL, *principal = "";
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_JWK)
			jwk_path = optarg;
		else if (opt == OPT_DP_KEY)
			dp_key = optarg;
		else if (opt == OPT_PRINCIPAL)
			principal = optarg;
	}
	int code = cli_getopt_end(cli, opt, argc, argv, 1, 1);
	if (code != CLI_PROCEED)
		return code;
	if (!jwk_path || !dp_key)
		return cli_usage_error(cli, "give --jwk FILE and --dp-key KEY");
	static uint8_t jwk[JWK_FILE_MAX + 1];
	size_t len, total;
	if ((code = cli_read_input(cli, jwk_path, jwk, JWK_FILE_MAX, &len, &total)) != CLI_EXIT_OK)
		return code;
	if (total > JWK_FILE_MAX)
		return cli_usage_error(cli, "--jwk %s: more than %d bytes: a JWK is smaller", jwk_path,
		                       JWK_FILE_MAX);
	jwk[len] = '\0';
	if (strlen((char *)jwk) != len)
		return cli_usage_error(cli, "--jwk %s: holds a zero byte: not a JWK", jwk_path);
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	Kms__AddConsentManagerRequest a = KMS__ADD_CONSENT_MANAGER_REQUEST__INIT;
	a.id = argv[optind];
	a.jwk = (char *)jwk;
	a.dp_key_id = (char *)dp_key;
	a.principal = (char *)principal;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ADD_CONSENT_MANAGER;
	req.add_consent_manager = &a;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	const Kms__ConsentManager *m = resp->add_consent_manager->manager;
	if (cli->json)
		code = cli_json_print(cli, json_manager(m));
	else
		print_managers(cli->out, &resp->add_consent_manager->manager, 1);
	kms_response_free(resp);
	return code;
}

static int cm_list(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	Kms__ListConsentManagersRequest l = KMS__LIST_CONSENT_MANAGERS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_CONSENT_MANAGERS;
	req.list_consent_managers = &l;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	const Kms__ListConsentManagersResponse *r = resp->list_consent_managers;
	if (cli->json) {
		json_t *a = json_array();
		for (size_t i = 0; a && i < r->n_managers; i++) {
			json_t *m = json_manager(r->managers[i]);
			if (!m || json_array_append_new(a, m) != 0) {
				json_decref(a);
				a = NULL;
			}
		}
		code = cli_json_print(cli, a ? json_pack("{s:o}", "managers", a) : NULL);
	} else {
		print_managers(cli->out, r->managers, r->n_managers);
	}
	kms_response_free(resp);
	return code;
}

static int cm_remove(struct cli *cli, int argc, char **argv)
{
	kms_client *client;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	Kms__RemoveConsentManagerRequest r = KMS__REMOVE_CONSENT_MANAGER_REQUEST__INIT;
	r.id = argv[optind];
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_REMOVE_CONSENT_MANAGER;
	req.remove_consent_manager = &r;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	if (cli->json)
		code = cli_json_print(cli, json_manager(resp->remove_consent_manager->manager));
	else
		fprintf(cli->out, "Consent Manager %s removed: every use under its artefacts is "
		        "denied from now on (they are kept as evidence)\n", r.id);
	kms_response_free(resp);
	return code;
}

/* ---- consent ---- */

static int consent_import(struct cli *cli, int argc, char **argv)
{
	int code = cli_parse_args(cli, argc, argv, 1, 1);
	if (code != CLI_PROCEED)
		return code;
	static uint8_t doc[ARTEFACT_FILE_MAX];
	size_t len, total;
	const char *path = argv[optind];
	if ((code = cli_read_input(cli, path, doc, sizeof doc, &len, &total)) != CLI_EXIT_OK)
		return code;
	if (total > sizeof doc)
		return cli_usage_error(cli, "%s: more than %d bytes: kmsd accepts artefacts of at "
		                       "most 64 KiB", path, ARTEFACT_FILE_MAX);
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	Kms__ImportConsentRequest ic = KMS__IMPORT_CONSENT_REQUEST__INIT;
	ic.artefact = (ProtobufCBinaryData){ len, doc };
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_IMPORT_CONSENT;
	req.import_consent = &ic;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	if (resp->import_consent->already_imported && !cli->json) {
		fprintf(cli->err, "%s: consent ", cli->path);
		cli_put_clean(cli->err, resp->import_consent->consent->id);
		fputs(" was already imported with these bytes: nothing changed\n", cli->err);
	}
	code = show_consent(cli, resp->import_consent->consent);
	kms_response_free(resp);
	return code;
}

static int consent_list(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "manager", required_argument, NULL, OPT_MANAGER },
		{ "dp", required_argument, NULL, OPT_DP },
		{ "purpose", required_argument, NULL, OPT_PURPOSE },
		{ "status", required_argument, NULL, OPT_STATUS },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	Kms__ListConsentsRequest l = KMS__LIST_CONSENTS_REQUEST__INIT;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (opt == OPT_MANAGER)
			l.manager = optarg;
		else if (opt == OPT_DP)
			l.data_principal = optarg;
		else if (opt == OPT_PURPOSE)
			l.purpose = optarg;
		else if (opt == OPT_STATUS)
			l.status = optarg;
	}
	int code = cli_getopt_end(cli, opt, argc, argv, 0, 0);
	if (code != CLI_PROCEED)
		return code;
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	json_t *all = cli->json ? json_array() : NULL;
	bool header = false;
	char token[80] = "";
	l.limit = 1000;
	for (unsigned page = 0; code == CLI_EXIT_OK && page < CONSENT_PAGES_MAX; page++) {
		l.page_token = token;
		Kms__Request req = KMS__REQUEST__INIT;
		req.op_case = KMS__REQUEST__OP_LIST_CONSENTS;
		req.list_consents = &l;
		Kms__Response *resp;
		if ((code = call(cli, client, &req, &resp)) != CLI_EXIT_OK)
			break;
		const Kms__ListConsentsResponse *r = resp->list_consents;
		for (size_t i = 0; all && i < r->n_consents; i++)
			if (json_array_append_new(all, json_consent(r->consents[i])) != 0) {
				json_decref(all);
				all = NULL;
			}
		if (!cli->json && (r->n_consents || !header)) {
			print_consents(cli->out, r->consents, header ? 0 : r->n_consents);
			header = true;
		}
		bool more = r->next_page_token && r->next_page_token[0] &&
		            strlen(r->next_page_token) < sizeof token;
		if (more)
			snprintf(token, sizeof token, "%s", r->next_page_token);
		kms_response_free(resp);
		if (!more)
			break;
	}
	kms_client_close(client);
	if (code == CLI_EXIT_OK && cli->json)
		return cli_json_print(cli, all ? json_pack("{s:o}", "consents", all) : NULL);
	json_decref(all);
	return code;
}

static int consent_show(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "artefact-out", required_argument, NULL, OPT_ARTEFACT_OUT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *artefact_out = NULL;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0)
		if (opt == OPT_ARTEFACT_OUT)
			artefact_out = optarg;
	int code = cli_getopt_end(cli, opt, argc, argv, 1, 1);
	if (code != CLI_PROCEED)
		return code;
	kms_client *client;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	Kms__DescribeConsentRequest d = KMS__DESCRIBE_CONSENT_REQUEST__INIT;
	d.consent_id = argv[optind];
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_CONSENT;
	req.describe_consent = &d;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	code = show_consent(cli, resp->describe_consent->consent);
	if (code == CLI_EXIT_OK && artefact_out)
		/* The artefact names the person (Customer.id): written 0600. */
		code = cli_write_private_file(cli, artefact_out, resp->describe_consent->artefact.data,
		                              resp->describe_consent->artefact.len);
	kms_response_free(resp);
	return code;
}

static int consent_set(struct cli *cli, int argc, char **argv, Kms__ConsentAction action)
{
	kms_client *client;
	int code = cli_parse_and_connect(cli, argc, argv, 1, 1, &client);
	if (code != CLI_PROCEED)
		return code;
	Kms__SetConsentStatusRequest s = KMS__SET_CONSENT_STATUS_REQUEST__INIT;
	s.consent_id = argv[optind];
	s.action = action;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_SET_CONSENT_STATUS;
	req.set_consent_status = &s;
	Kms__Response *resp;
	code = call(cli, client, &req, &resp);
	kms_client_close(client);
	if (code != CLI_EXIT_OK)
		return code;
	code = show_consent(cli, resp->set_consent_status->consent);
	kms_response_free(resp);
	return code;
}

static int consent_pause(struct cli *cli, int argc, char **argv)
{
	return consent_set(cli, argc, argv, KMS__CONSENT_ACTION__CONSENT_PAUSE);
}

static int consent_resume(struct cli *cli, int argc, char **argv)
{
	return consent_set(cli, argc, argv, KMS__CONSENT_ACTION__CONSENT_RESUME);
}

static int consent_revoke(struct cli *cli, int argc, char **argv)
{
	return consent_set(cli, argc, argv, KMS__CONSENT_ACTION__CONSENT_REVOKE);
}

const struct cli_command admin_consent_manager_commands[] = {
	{ .name = "add", .run = cm_add, .args = "ID --jwk FILE --dp-key KEY [--principal P]",
	  .help = "Register a Consent Manager: its public JWK and the HMAC key that pseudonymizes "
	          "its data principals",
	  .details =
		"  --jwk FILE            its public signature key, a JWK (RSA or EC P-256) with\n"
		"                        the kid its JWS headers name; a private key is refused\n"
		"  --dp-key KEY          an HMAC_SHA256 key (id or alias): Customer.id becomes\n"
		"                        the pseudonym Pseudonymize gives with it\n"
		"  --principal P         the principal (its webhook) that may import its\n"
		"                        artefacts and change their status; admins always may\n" },
	{ .name = "list", .run = cm_list, .help = "The Consent Managers, removed ones included" },
	{ .name = "remove", .run = cm_remove, .args = "ID",
	  .help = "Remove a Consent Manager: its artefacts stay, every use under them is denied" },
	{ 0 },
};

const struct cli_command admin_consent_commands[] = {
	{ .name = "import", .run = consent_import, .args = "FILE",
	  .help = "Import a consent artefact (ReBIT JSON with a detached JWS), verified first" },
	{ .name = "list", .run = consent_list,
	  .args = "[--manager CM] [--dp PSEUDONYM] [--purpose CODE] [--status S]",
	  .help = "The imported artefacts, filtered (S: ACTIVE, PAUSED, REVOKED)" },
	{ .name = "show", .run = consent_show, .args = "ID [--artefact-out FILE]",
	  .help = "One artefact: status, window, limits, uses; --artefact-out writes its bytes" },
	{ .name = "pause", .run = consent_pause, .args = "ID",
	  .help = "Pause an ACTIVE artefact: uses are denied from the next request" },
	{ .name = "resume", .run = consent_resume, .args = "ID",
	  .help = "Resume a PAUSED artefact" },
	{ .name = "revoke", .run = consent_revoke, .args = "ID",
	  .help = "Revoke an artefact (final): uses are denied from the next request" },
	{ 0 },
};
