/*
 * authz_expectations.h: who may do what, written by hand from
 * docs/authorization.md ("Roles", "The decision"): for every operation, one
 * verdict per role set under each of three key policies (the default; the
 * default plus an Allow for principal "app" of encrypt and decrypt; that
 * plus a Deny of decrypt and disable_key to everyone). The decision's unit
 * test (test_authz_table) and the walk against a real kmsd
 * (test_authz_matrix) check against this one table, so the two cannot
 * drift apart; an operation the table does not list fails both, so a new
 * operation gets a row here before it ships.
 */
#ifndef KMS_TEST_AUTHZ_EXPECTATIONS_H
#define KMS_TEST_AUTHZ_EXPECTATIONS_H

#include <stddef.h>
#include <string.h>

/* Role bits of the table's principals (each test maps them to its own). */
enum { EXPECT_ADMIN = 1, EXPECT_APP = 2, EXPECT_AUDITOR = 4 };

/* Role sets, in the order of the expectation strings below; the names are
 * the ones the policies below use. */
static const struct expect_principal {
	const char *name;
	unsigned roles;
} expect_principals[] = {
	{ "admin", EXPECT_ADMIN },
	{ "app", EXPECT_APP },
	{ "auditor", EXPECT_AUDITOR },
	{ "app-auditor", EXPECT_APP | EXPECT_AUDITOR },
	{ "nobody", 0 },
};
#define N_PRINCIPALS (sizeof expect_principals / sizeof expect_principals[0])

static const char allow_app_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"admins-manage\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
        "\"Action\":[\"describe_key\",\"update_key_description\",\"enable_key\","
        "\"disable_key\",\"rotate_key\",\"set_rotation_period\",\"schedule_key_deletion\","
        "\"cancel_key_deletion\",\"tag_key\",\"untag_key\",\"put_key_policy\","
        "\"get_key_policy\",\"create_alias\",\"update_alias\",\"delete_alias\","
        "\"create_grant\",\"erase_data_principal\",\"set_data_principal_hold\","
        "\"set_retention\"]},"
        "{\"Sid\":\"app-uses\",\"Effect\":\"Allow\",\"Principal\":\"app\","
        "\"Action\":[\"encrypt\",\"decrypt\"]}]}";

static const char deny_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"admins-manage\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
        "\"Action\":[\"describe_key\",\"update_key_description\",\"enable_key\","
        "\"disable_key\",\"rotate_key\",\"set_rotation_period\",\"schedule_key_deletion\","
        "\"cancel_key_deletion\",\"tag_key\",\"untag_key\",\"put_key_policy\","
        "\"get_key_policy\",\"create_alias\",\"update_alias\",\"delete_alias\","
        "\"create_grant\",\"erase_data_principal\",\"set_data_principal_hold\","
        "\"set_retention\"]},"
        "{\"Sid\":\"app-uses\",\"Effect\":\"Allow\",\"Principal\":\"app\","
        "\"Action\":[\"encrypt\",\"decrypt\"]},"
        "{\"Sid\":\"frozen\",\"Effect\":\"Deny\",\"Principal\":\"*\","
        "\"Action\":[\"decrypt\",\"disable_key\"]}]}";

/*
 * The table. For each operation, one string per policy (default,
 * allow-app, deny), each one character per role set in the order
 * admin, app, auditor, app+auditor, none: 'A' allowed, '-' denied.
 */
typedef struct expectation {
	const char *op;
	const char *by_policy[3];
} expectation;

#define CONTROL(name) { name, { "A----", "A----", "A----" } }
#define READ(name) { name, { "A-AA-", "A-AA-", "A-AA-" } }
#define DENIED(name) { name, { "-----", "-----", "-----" } }

static const expectation table[] = {
	/* Data plane: no role by itself allows using a key; the policy does. */
	{ "encrypt", { "-----", "-A---", "-A---" } },
	{ "decrypt", { "-----", "-A---", "-----" } },
	DENIED("re_encrypt"),
	DENIED("generate_data_key"),
	DENIED("generate_data_key_without_plaintext"),
	DENIED("batch_encrypt"),
	DENIED("batch_decrypt"),
	DENIED("batch_generate_data_key"),
	DENIED("sign"),
	DENIED("verify"),
	DENIED("get_public_key"),
	DENIED("generate_mac"),
	DENIED("verify_mac"),
	DENIED("pseudonymize"),
	/* No key: the role decides. */
	{ "generate_random", { "AA-A-", "AA-A-", "AA-A-" } },
	{ "create_key", { "A----", "A----", "A----" } },
	/* Key control plane: admin, where the policy allows (it does). */
	CONTROL("update_key_description"),
	CONTROL("enable_key"),
	{ "disable_key", { "A----", "A----", "-----" } },
	CONTROL("rotate_key"),
	CONTROL("set_rotation_period"),
	CONTROL("schedule_key_deletion"),
	CONTROL("cancel_key_deletion"),
	CONTROL("tag_key"),
	CONTROL("untag_key"),
	CONTROL("put_key_policy"),
	CONTROL("create_alias"),
	CONTROL("update_alias"),
	CONTROL("delete_alias"),
	/* A grant on a key: a key control-plane change, decided on its policy
	 * (the policies here list it for admins; test_policy_default shows a
	 * policy that does not). */
	CONTROL("create_grant"),
	/* Key reads: admin or auditor. */
	READ("describe_key"),
	READ("get_key_policy"),
	READ("list_keys"),
	READ("list_aliases"),
	/* Audit reads. */
	READ("get_checkpoint"),
	READ("get_inclusion_proof"),
	READ("get_consistency_proof"),
	/* Anyone admitted. */
	{ "health", { "AAAAA", "AAAAA", "AAAAA" } },
	/* Principals, access keys, listing and revoking grants: admin. */
	CONTROL("create_principal"),
	CONTROL("list_principals"),
	CONTROL("describe_principal"),
	CONTROL("enable_principal"),
	CONTROL("disable_principal"),
	CONTROL("delete_principal"),
	CONTROL("create_access_key"),
	CONTROL("list_access_keys"),
	CONTROL("revoke_access_key"),
	CONTROL("list_grants"),
	CONTROL("revoke_grant"),
	/* Any principal; the handler admits only the grantee or an admin. */
	{ "retire_grant", { "AAAAA", "AAAAA", "AAAAA" } },
	/* HSM administration: only an admin rotates the KEK; an auditor may
	 * list the KEKs (no key material: ids, states, counts), to check that
	 * a rotation completed. */
	CONTROL("rotate_kek"),
	READ("list_keks"),
	/* Consent (docs/consent.md): admins register Consent Managers;
	 * importing and changing an artefact's status admit any principal with
	 * a role, and the handler then admits an admin or the Consent
	 * Manager's bound principal; reading is for admins and auditors. */
	CONTROL("add_consent_manager"),
	CONTROL("remove_consent_manager"),
	{ "import_consent", { "AAAA-", "AAAA-", "AAAA-" } },
	{ "set_consent_status", { "AAAA-", "AAAA-", "AAAA-" } },
	READ("list_consent_managers"),
	READ("list_consents"),
	READ("describe_consent"),
	/* Data principals' sub-keys: changes on the key's policy (admin);
	 * the due list: admin or auditor. */
	CONTROL("erase_data_principal"),
	CONTROL("set_data_principal_hold"),
	CONTROL("set_retention"),
	READ("list_due_erasures"),
};

static inline const expectation *expected_for(const char *op)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (!strcmp(table[i].op, op))
			return &table[i];
	return NULL;
}

#endif
