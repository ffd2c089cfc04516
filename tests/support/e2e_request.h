/*
 * e2e_request.h: one request for any operation of the protocol, by its
 * Request.op field name, filled with the arguments a test gives. The
 * authorization tests walk every operation with it (test_authz_e2e,
 * test_authz_matrix); an operation it does not know makes them fail, so a
 * new operation gets a request here before it ships.
 */
#ifndef KMS_TEST_E2E_REQUEST_H
#define KMS_TEST_E2E_REQUEST_H

#include <stdbool.h>

#include <kms/kms.pb-c.h>

typedef struct e2e_op_args {
	const char *key;                /* the key (id or alias) most operations name */
	ProtobufCBinaryData blob;       /* decrypt, batch_decrypt: a blob */
	ProtobufCBinaryData re_blob;    /* re_encrypt's source blob ... */
	const char *re_purpose;         /* ... sealed with context purpose=this (NULL: none) */
	const char *re_destination;     /* re_encrypt's destination key (NULL: key) */
	const char *create_alias;       /* create_alias's new name, onto key */
	const char *update_alias;       /* update_alias: this alias moved onto key */
	const char *delete_alias;
	const char *policy;             /* put_key_policy's document */
	const char *principal;          /* the principals family's target name */
	const char *access_key_id;      /* revoke_access_key */
	const char *grantee;            /* create_grant, on key, for encrypt */
	const char *grant_id;           /* retire_grant, revoke_grant */
	const char *cm_id;              /* add/remove_consent_manager */
	const char *jwk;                /* add_consent_manager */
	const char *dp_key;             /* add_consent_manager's dp key */
	const char *cm_principal;       /* add_consent_manager's bound principal */
	ProtobufCBinaryData artefact;   /* import_consent */
	const char *consent_id;         /* set_consent_status, describe_consent */
} e2e_op_args;

/* Every message a request may point at, so that one struct holds it all. */
typedef struct e2e_op_request {
	Kms__Request req;
	Kms__EncryptRequest enc, *enc_items[1];
	Kms__DecryptRequest dec, *dec_items[1];
	Kms__GenerateDataKeyRequest gdk, *gdk_items[1];
	Kms__GenerateDataKeyWithoutPlaintextRequest gdkw;
	Kms__ReEncryptRequest re;
	Kms__StringPair re_pair, *re_pairs[1];
	Kms__BatchEncryptRequest be;
	Kms__BatchDecryptRequest bd;
	Kms__BatchGenerateDataKeyRequest bg;
	Kms__GenerateRandomRequest gr;
	Kms__CreateKeyRequest ck;
	Kms__DescribeKeyRequest dk;
	Kms__ListKeysRequest lk;
	Kms__UpdateKeyDescriptionRequest ud;
	Kms__EnableKeyRequest ek;
	Kms__DisableKeyRequest xk;
	Kms__RotateKeyRequest rk;
	Kms__SetRotationPeriodRequest sr;
	Kms__ScheduleKeyDeletionRequest sd;
	Kms__CancelKeyDeletionRequest cd;
	Kms__CreateAliasRequest ca;
	Kms__UpdateAliasRequest ua;
	Kms__DeleteAliasRequest da;
	Kms__ListAliasesRequest la;
	Kms__GetKeyPolicyRequest gp;
	Kms__PutKeyPolicyRequest pp;
	Kms__StringPair tag, *tags[1];
	Kms__TagKeyRequest tk;
	Kms__UntagKeyRequest uk;
	char *untag[1];
	Kms__HealthRequest hr;
	Kms__GetCheckpointRequest gc;
	Kms__GetInclusionProofRequest gi;
	Kms__GetConsistencyProofRequest gcp;
	Kms__Role app_role[1];
	Kms__CreatePrincipalRequest cp;
	Kms__ListPrincipalsRequest lp;
	Kms__DescribePrincipalRequest dp;
	Kms__EnablePrincipalRequest ep;
	Kms__DisablePrincipalRequest xp;
	Kms__DeletePrincipalRequest rp;
	Kms__CreateAccessKeyRequest cak;
	Kms__ListAccessKeysRequest lak;
	Kms__RevokeAccessKeyRequest rak;
	Kms__CreateGrantRequest cg;
	char *grant_ops[1];
	Kms__ListGrantsRequest lg;
	Kms__RetireGrantRequest rtg;
	Kms__RevokeGrantRequest rvg;
	Kms__ListKeksRequest lkek;
	Kms__RotateKekRequest rkek;
	Kms__SignRequest sign;
	Kms__VerifyRequest verify;
	Kms__GetPublicKeyRequest gpk;
	Kms__GenerateMacRequest gmac;
	Kms__VerifyMacRequest vmac;
	Kms__PseudonymizeRequest pseudo;
	Kms__AddConsentManagerRequest acm;
	Kms__ListConsentManagersRequest lcm;
	Kms__RemoveConsentManagerRequest rcm;
	Kms__ImportConsentRequest ic;
	Kms__SetConsentStatusRequest scs;
	Kms__ListConsentsRequest lc;
	Kms__DescribeConsentRequest dc;
	ProtobufCBinaryData pseudo_values[1];
	Kms__EraseDataPrincipalRequest erase_dp;
	Kms__SetDataPrincipalHoldRequest hold_dp;
	Kms__ListDueErasuresRequest due;
	Kms__SetRetentionRequest retention;
	uint8_t mac[32];
} e2e_op_request;

/* Fills o->req for operation op with a's arguments (o must stay where it
 * is while o->req is in use: it points into o). The request id is left
 * empty. False for an operation this file does not know. */
bool e2e_op_request_build(e2e_op_request *o, const char *op, const e2e_op_args *a);

/* A batch reply's one item status, or -1 when r is no batch of one item. */
int e2e_batch_item_status(const Kms__Response *r);

#endif
