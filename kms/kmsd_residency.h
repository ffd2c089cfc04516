/*
 * kmsd_residency.h: kmsd runs only on the HSMs its config pins
 * (docs/config.md, [hsm] pinned; docs/security.md, "Residency").
 *
 * The keys' protection rests on the HSM holding them being the one the
 * operator chose, in the country the operator chose: a token with the
 * right label in another device (a copy restored elsewhere, a software
 * token put in its place) must not be used. At start, after login, kmsd
 * reads the token's manufacturer, model and serial number and refuses to
 * go on unless they are one of the pins. With no pin configured it runs on
 * any token with the label and says so at start; Health reports the token
 * and whether it was pinned.
 */
#ifndef KMS_KMSD_RESIDENCY_H
#define KMS_KMSD_RESIDENCY_H

#include <stdbool.h>

#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/config.h"

typedef struct kmsd_residency {
	hsm_token_info token; /* as read at start */
	bool pinned;          /* it matched a configured pin */
	/* Where the state lives on this host, for Health (admins and auditors
	 * only): the data directory, absolute, and the store's file in it. */
	char data_dir[KMSD_PATH_MAX];
	char store_path[KMSD_PATH_MAX + 16];
} kmsd_residency;

/* Reads h's token and checks it against cfg's pins into *out.
 * KMS_FAILED_PRECONDITION, naming the token's manufacturer, model and serial
 * and the pins, when pins are configured and it is none of them; the HSM
 * layer's failure when the token cannot be read. */
kms_status kmsd_residency_check(const kmsd_config *cfg, hsm *h,
                                kmsd_residency *out) KMS_MUST_USE;

/* Resolves cfg's data directory (which must exist) to an absolute path
 * into out->data_dir and names the store's file in it. KMS_INVALID_ARGUMENT
 * when it cannot be resolved or is too long. */
kms_status kmsd_residency_locate(const kmsd_config *cfg, kmsd_residency *out) KMS_MUST_USE;

#endif
