/* e2e_request.c: a request for any operation, by name (e2e_request.h). */
#include "tests/support/e2e_request.h"

#include <stdint.h>
#include <string.h>

#define NAME_OR(s, fallback) ((char *)(uintptr_t)((s) ? (s) : (fallback)))

static void init_all(e2e_op_request *o)
{
	memset(o, 0, sizeof *o);
	kms__request__init(&o->req);
	kms__encrypt_request__init(&o->enc);
	kms__decrypt_request__init(&o->dec);
	kms__generate_data_key_request__init(&o->gdk);
	kms__generate_data_key_without_plaintext_request__init(&o->gdkw);
	kms__re_encrypt_request__init(&o->re);
	kms__string_pair__init(&o->re_pair);
	kms__batch_encrypt_request__init(&o->be);
	kms__batch_decrypt_request__init(&o->bd);
	kms__batch_generate_data_key_request__init(&o->bg);
	kms__generate_random_request__init(&o->gr);
	kms__create_key_request__init(&o->ck);
	kms__describe_key_request__init(&o->dk);
	kms__list_keys_request__init(&o->lk);
	kms__update_key_description_request__init(&o->ud);
	kms__enable_key_request__init(&o->ek);
	kms__disable_key_request__init(&o->xk);
	kms__rotate_key_request__init(&o->rk);
	kms__set_rotation_period_request__init(&o->sr);
	kms__schedule_key_deletion_request__init(&o->sd);
	kms__cancel_key_deletion_request__init(&o->cd);
	kms__create_alias_request__init(&o->ca);
	kms__update_alias_request__init(&o->ua);
	kms__delete_alias_request__init(&o->da);
	kms__list_aliases_request__init(&o->la);
	kms__get_key_policy_request__init(&o->gp);
	kms__put_key_policy_request__init(&o->pp);
	kms__string_pair__init(&o->tag);
	kms__tag_key_request__init(&o->tk);
	kms__untag_key_request__init(&o->uk);
	kms__health_request__init(&o->hr);
	kms__get_checkpoint_request__init(&o->gc);
	kms__get_inclusion_proof_request__init(&o->gi);
	kms__get_consistency_proof_request__init(&o->gcp);
	kms__create_principal_request__init(&o->cp);
	kms__list_principals_request__init(&o->lp);
	kms__describe_principal_request__init(&o->dp);
	kms__enable_principal_request__init(&o->ep);
	kms__disable_principal_request__init(&o->xp);
	kms__delete_principal_request__init(&o->rp);
	kms__create_access_key_request__init(&o->cak);
	kms__list_access_keys_request__init(&o->lak);
	kms__revoke_access_key_request__init(&o->rak);
	kms__create_grant_request__init(&o->cg);
	kms__list_grants_request__init(&o->lg);
	kms__retire_grant_request__init(&o->rtg);
	kms__revoke_grant_request__init(&o->rvg);
	kms__list_keks_request__init(&o->lkek);
	kms__rotate_kek_request__init(&o->rkek);
	kms__sign_request__init(&o->sign);
	kms__verify_request__init(&o->verify);
	kms__get_public_key_request__init(&o->gpk);
	kms__generate_mac_request__init(&o->gmac);
	kms__verify_mac_request__init(&o->vmac);
	kms__pseudonymize_request__init(&o->pseudo);
	kms__add_consent_manager_request__init(&o->acm);
	kms__list_consent_managers_request__init(&o->lcm);
	kms__remove_consent_manager_request__init(&o->rcm);
	kms__import_consent_request__init(&o->ic);
	kms__set_consent_status_request__init(&o->scs);
	kms__list_consents_request__init(&o->lc);
	kms__describe_consent_request__init(&o->dc);
	kms__erase_data_principal_request__init(&o->erase_dp);
	kms__set_data_principal_hold_request__init(&o->hold_dp);
	kms__list_due_erasures_request__init(&o->due);
	kms__set_retention_request__init(&o->retention);
}

/* Every message's arguments, whichever operation is asked for. */
static void fill(e2e_op_request *o, const e2e_op_args *a)
{
	char *key = NAME_OR(a->key, "");
	o->enc.key_id = key;
	o->enc.plaintext.data = (uint8_t *)"x";
	o->enc.plaintext.len = 1;
	o->enc_items[0] = &o->enc;
	o->dec.ciphertext_blob = a->blob;
	o->dec_items[0] = &o->dec;
	o->gdk.key_id = o->gdkw.key_id = key;
	o->gdk_items[0] = &o->gdk;
	o->re.ciphertext_blob = a->re_blob;
	if (a->re_purpose) {
		o->re_pair.key = "purpose";
		o->re_pair.value = NAME_OR(a->re_purpose, "");
		o->re_pairs[0] = &o->re_pair;
		o->re.source_encryption_context = o->re_pairs;
		o->re.n_source_encryption_context = 1;
	}
	o->re.destination_key_id = NAME_OR(a->re_destination, key);
	o->be.items = o->enc_items;
	o->be.n_items = 1;
	o->bd.items = o->dec_items;
	o->bd.n_items = 1;
	o->bg.items = o->gdk_items;
	o->bg.n_items = 1;
	o->gr.number_of_bytes = 8;
	o->ck.description = "walk";
	o->dk.key_id = o->gp.key_id = o->ud.key_id = o->ek.key_id = o->xk.key_id = key;
	o->rk.key_id = o->sr.key_id = o->sd.key_id = o->cd.key_id = key;
	o->pp.key_id = o->tk.key_id = o->uk.key_id = key;
	o->ud.description = "changed";
	o->sr.rotation_period_days = 90;
	o->sd.pending_window_days = 7;
	o->ca.alias_name = NAME_OR(a->create_alias, "alias/walk-new");
	o->ca.target_key_id = key;
	o->ua.alias_name = NAME_OR(a->update_alias, "alias/walk-moved");
	o->ua.target_key_id = key;
	o->da.alias_name = NAME_OR(a->delete_alias, "alias/walk-gone");
	o->pp.policy = NAME_OR(a->policy, "");
	o->tag.key = "team";
	o->tag.value = "a";
	o->tags[0] = &o->tag;
	o->tk.tags = o->tags;
	o->tk.n_tags = 1;
	o->untag[0] = "team";
	o->uk.tag_keys = o->untag;
	o->uk.n_tag_keys = 1;
	o->gi.index = 0;
	o->gcp.old_size = 1;
	/* The principals family: a name the caller gives, never its own. */
	char *principal = NAME_OR(a->principal, "walk-principal");
	o->app_role[0] = KMS__ROLE__APP;
	o->cp.name = principal;
	o->cp.roles = o->app_role;
	o->cp.n_roles = 1;
	o->dp.name = o->ep.name = o->xp.name = o->rp.name = principal;
	o->cak.principal = o->lak.principal = principal;
	o->rak.access_key_id = NAME_OR(a->access_key_id, "AKAAAAAAAAAAAAAAAAAAAA");
	o->cg.key_id = o->lg.key_id = key;
	o->cg.grantee = NAME_OR(a->grantee, principal);
	o->grant_ops[0] = "encrypt";
	o->cg.operations = o->grant_ops;
	o->cg.n_operations = 1;
	o->rtg.grant_id = o->rvg.grant_id = NAME_OR(a->grant_id, "GRAAAAAAAAAAAAAAAAAAAA");
	/* Signing, MACs, pseudonyms: valid requests on key (whatever its usage:
	 * the policy decides before the usage is checked). */
	ProtobufCBinaryData m = { 1, (uint8_t *)"m" };
	o->sign.key_id = o->verify.key_id = o->gpk.key_id = key;
	o->gmac.key_id = o->vmac.key_id = o->pseudo.key_id = key;
	o->sign.message = o->verify.message = o->gmac.message = o->vmac.message = m;
	o->verify.signature = m;
	o->vmac.mac.data = o->mac;
	o->vmac.mac.len = sizeof o->mac;
	o->pseudo_values[0] = m;
	o->pseudo.values = o->pseudo_values;
	o->pseudo.n_values = 1;
	/* Consent: well-formed requests naming nothing that exists, so an
	 * allowed one fails after the decision (NOT_FOUND, INVALID_ARGUMENT). */
	o->acm.id = o->rcm.id = NAME_OR(a->cm_id, "walk-cm");
	o->acm.jwk = NAME_OR(a->jwk, "{}");
	o->acm.dp_key_id = NAME_OR(a->dp_key, key);
	o->acm.principal = NAME_OR(a->cm_principal, "");
	o->ic.artefact = a->artefact.len ? a->artefact : (ProtobufCBinaryData){ 2, (uint8_t *)"{}" };
	o->scs.consent_id = o->dc.consent_id = NAME_OR(a->consent_id, "walk-consent");
	o->scs.action = KMS__CONSENT_ACTION__CONSENT_PAUSE;
	/* Data principals: a well-formed pseudonym on key. */
	char *dp = "kp_0000abcd_1_abcdefghijklmnopqrstuvwxyz234567";
	o->erase_dp.key_id = o->hold_dp.key_id = o->retention.key_id = key;
	o->erase_dp.data_principal = o->hold_dp.data_principal = dp;
	o->erase_dp.basis = "walk";
	o->hold_dp.hold = "";
	o->retention.purpose = "101";
	o->retention.days = 30;
}

bool e2e_op_request_build(e2e_op_request *o, const char *op, const e2e_op_args *a)
{
	init_all(o);
	fill(o, a);
	Kms__Request *r = &o->req;
#define OP(name, field, CASE, msg)                  \
	else if (!strcmp(op, name))                 \
	{                                           \
		r->op_case = KMS__REQUEST__OP_##CASE; \
		r->field = msg;                     \
	}
	if (0) {
	}
	OP("encrypt", encrypt, ENCRYPT, &o->enc)
	OP("decrypt", decrypt, DECRYPT, &o->dec)
	OP("generate_data_key", generate_data_key, GENERATE_DATA_KEY, &o->gdk)
	OP("generate_data_key_without_plaintext", generate_data_key_without_plaintext,
	   GENERATE_DATA_KEY_WITHOUT_PLAINTEXT, &o->gdkw)
	OP("re_encrypt", re_encrypt, RE_ENCRYPT, &o->re)
	OP("batch_encrypt", batch_encrypt, BATCH_ENCRYPT, &o->be)
	OP("batch_decrypt", batch_decrypt, BATCH_DECRYPT, &o->bd)
	OP("batch_generate_data_key", batch_generate_data_key, BATCH_GENERATE_DATA_KEY, &o->bg)
	OP("generate_random", generate_random, GENERATE_RANDOM, &o->gr)
	OP("sign", sign, SIGN, &o->sign)
	OP("verify", verify, VERIFY, &o->verify)
	OP("get_public_key", get_public_key, GET_PUBLIC_KEY, &o->gpk)
	OP("generate_mac", generate_mac, GENERATE_MAC, &o->gmac)
	OP("verify_mac", verify_mac, VERIFY_MAC, &o->vmac)
	OP("pseudonymize", pseudonymize, PSEUDONYMIZE, &o->pseudo)
	OP("create_key", create_key, CREATE_KEY, &o->ck)
	OP("describe_key", describe_key, DESCRIBE_KEY, &o->dk)
	OP("list_keys", list_keys, LIST_KEYS, &o->lk)
	OP("update_key_description", update_key_description, UPDATE_KEY_DESCRIPTION, &o->ud)
	OP("enable_key", enable_key, ENABLE_KEY, &o->ek)
	OP("disable_key", disable_key, DISABLE_KEY, &o->xk)
	OP("rotate_key", rotate_key, ROTATE_KEY, &o->rk)
	OP("set_rotation_period", set_rotation_period, SET_ROTATION_PERIOD, &o->sr)
	OP("schedule_key_deletion", schedule_key_deletion, SCHEDULE_KEY_DELETION, &o->sd)
	OP("cancel_key_deletion", cancel_key_deletion, CANCEL_KEY_DELETION, &o->cd)
	OP("create_alias", create_alias, CREATE_ALIAS, &o->ca)
	OP("update_alias", update_alias, UPDATE_ALIAS, &o->ua)
	OP("delete_alias", delete_alias, DELETE_ALIAS, &o->da)
	OP("list_aliases", list_aliases, LIST_ALIASES, &o->la)
	OP("get_key_policy", get_key_policy, GET_KEY_POLICY, &o->gp)
	OP("put_key_policy", put_key_policy, PUT_KEY_POLICY, &o->pp)
	OP("tag_key", tag_key, TAG_KEY, &o->tk)
	OP("untag_key", untag_key, UNTAG_KEY, &o->uk)
	OP("health", health, HEALTH, &o->hr)
	OP("get_checkpoint", get_checkpoint, GET_CHECKPOINT, &o->gc)
	OP("get_inclusion_proof", get_inclusion_proof, GET_INCLUSION_PROOF, &o->gi)
	OP("get_consistency_proof", get_consistency_proof, GET_CONSISTENCY_PROOF, &o->gcp)
	OP("create_principal", create_principal, CREATE_PRINCIPAL, &o->cp)
	OP("list_principals", list_principals, LIST_PRINCIPALS, &o->lp)
	OP("describe_principal", describe_principal, DESCRIBE_PRINCIPAL, &o->dp)
	OP("enable_principal", enable_principal, ENABLE_PRINCIPAL, &o->ep)
	OP("disable_principal", disable_principal, DISABLE_PRINCIPAL, &o->xp)
	OP("delete_principal", delete_principal, DELETE_PRINCIPAL, &o->rp)
	OP("create_access_key", create_access_key, CREATE_ACCESS_KEY, &o->cak)
	OP("list_access_keys", list_access_keys, LIST_ACCESS_KEYS, &o->lak)
	OP("revoke_access_key", revoke_access_key, REVOKE_ACCESS_KEY, &o->rak)
	OP("create_grant", create_grant, CREATE_GRANT, &o->cg)
	OP("list_grants", list_grants, LIST_GRANTS, &o->lg)
	OP("retire_grant", retire_grant, RETIRE_GRANT, &o->rtg)
	OP("revoke_grant", revoke_grant, REVOKE_GRANT, &o->rvg)
	OP("list_keks", list_keks, LIST_KEKS, &o->lkek)
	OP("rotate_kek", rotate_kek, ROTATE_KEK, &o->rkek)
	OP("add_consent_manager", add_consent_manager, ADD_CONSENT_MANAGER, &o->acm)
	OP("list_consent_managers", list_consent_managers, LIST_CONSENT_MANAGERS, &o->lcm)
	OP("remove_consent_manager", remove_consent_manager, REMOVE_CONSENT_MANAGER, &o->rcm)
	OP("import_consent", import_consent, IMPORT_CONSENT, &o->ic)
	OP("set_consent_status", set_consent_status, SET_CONSENT_STATUS, &o->scs)
	OP("list_consents", list_consents, LIST_CONSENTS, &o->lc)
	OP("describe_consent", describe_consent, DESCRIBE_CONSENT, &o->dc)
	OP("erase_data_principal", erase_data_principal, ERASE_DATA_PRINCIPAL, &o->erase_dp)
	OP("set_data_principal_hold", set_data_principal_hold, SET_DATA_PRINCIPAL_HOLD,
	   &o->hold_dp)
	OP("list_due_erasures", list_due_erasures, LIST_DUE_ERASURES, &o->due)
	OP("set_retention", set_retention, SET_RETENTION, &o->retention)
	else return false;
#undef OP
	return true;
}

int e2e_batch_item_status(const Kms__Response *r)
{
	switch (r->result_case) {
	case KMS__RESPONSE__RESULT_BATCH_ENCRYPT:
		return r->batch_encrypt->n_results == 1 ? (int)r->batch_encrypt->results[0]->status
		                                        : -1;
	case KMS__RESPONSE__RESULT_BATCH_DECRYPT:
		return r->batch_decrypt->n_results == 1 ? (int)r->batch_decrypt->results[0]->status
		                                        : -1;
	case KMS__RESPONSE__RESULT_BATCH_GENERATE_DATA_KEY:
		return r->batch_generate_data_key->n_results == 1
		               ? (int)r->batch_generate_data_key->results[0]->status
		               : -1;
	default:
		return -1;
	}
}
