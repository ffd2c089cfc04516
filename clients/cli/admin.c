/*
 * admin.c: kms-admin's command table. Usage text and dispatch both come
 * from it, so they cannot drift apart.
 */
#include "clients/cli/admin.h"

const struct cli_command admin_commands[] = {
	{ .name = "key", .sub = admin_key_commands, .help = "Manage keys" },
	{ .name = "alias", .sub = admin_alias_commands, .help = "Manage aliases" },
	{ .name = "principal", .sub = admin_principal_commands,
	  .help = "Manage principals: who may call kmsd, with which roles" },
	{ .name = "access-key", .sub = admin_access_key_commands,
	  .help = "Manage a principal's access keys (for signed requests)" },
	{ .name = "grant", .sub = admin_grant_commands,
	  .help = "Manage grants: one principal may use one key" },
	{ .name = "consent-manager", .sub = admin_consent_manager_commands,
	  .help = "Register the Consent Managers whose signed artefacts kmsd accepts" },
	{ .name = "consent", .sub = admin_consent_commands,
	  .help = "Consent artefacts: import, list, show, pause, resume, revoke" },
	{ .name = "health", .run = admin_health,
	  .help = "Ask kmsd whether it and its HSM are well (exit 1 if the HSM is not)" },
	{ .name = "data-principal", .sub = admin_dp_commands,
	  .help = "Data principals' sub-keys: erase, legal holds, due erasures" },
	{ .name = "hsm", .sub = admin_hsm_commands, .help = "The HSM: its token (directly) and kmsd's key-encryption keys" },
	{ .name = "report", .sub = admin_report_commands,
	  .help = "Reports for regulators and auditors: residency" },
	{ .name = "audit", .sub = admin_audit_commands,
	  .help = "Check the audit log: verify a copy, read entries, prove them" },
	{ 0 },
};
