/*
 * kmsd_residency.c: the pinned-HSM check at start (kmsd_residency.h).
 */
#include "kms/kmsd_residency.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"

static bool pin_matches(const kmsd_hsm_pin *p, const hsm_token_info *t)
{
	return !strcmp(p->manufacturer, t->manufacturer) && !strcmp(p->model, t->model) &&
	       !strcmp(p->serial, t->serial);
}

kms_status kmsd_residency_check(const kmsd_config *cfg, hsm *h, kmsd_residency *out)
{
	memset(out, 0, sizeof *out);
	KMS_GUARD(hsm_info(h, &out->token));
	for (size_t i = 0; i < cfg->n_hsm_pins; i++)
		if (pin_matches(&cfg->hsm_pins[i], &out->token))
			out->pinned = true;
	if (out->pinned || cfg->n_hsm_pins == 0)
		return KMS_OK;
	char pins[KMSD_HSM_PINS_MAX * 72] = "";
	size_t at = 0;
	for (size_t i = 0; i < cfg->n_hsm_pins && at < sizeof pins; i++) {
		int n = snprintf(pins + at, sizeof pins - at, "%s%s|%s|%s", i ? ", " : "",
		                 cfg->hsm_pins[i].manufacturer, cfg->hsm_pins[i].model,
		                 cfg->hsm_pins[i].serial);
		if (n < 0)
			break;
		at += (size_t)n;
	}
	return KMS_FAIL(KMS_FAILED_PRECONDITION,
	                "residency: HSM token \"%s\" is %s|%s|%s, not one of the [hsm] pinned "
	                "tokens (%s): refusing it; pin it only if the keys belong there",
	                out->token.label, out->token.manufacturer, out->token.model,
	                out->token.serial, pins);
}

kms_status kmsd_residency_locate(const kmsd_config *cfg, kmsd_residency *out)
{
	char resolved[PATH_MAX];
	KMS_ENSURE(realpath(cfg->data_dir, resolved), KMS_INVALID_ARGUMENT,
	           "data_dir %s: %s", cfg->data_dir, strerror(errno));
	KMS_ENSURE(strlen(resolved) < sizeof out->data_dir, KMS_INVALID_ARGUMENT,
	           "data_dir %s: longer than %zu bytes once resolved", cfg->data_dir,
	           sizeof out->data_dir - 1);
	memcpy(out->data_dir, resolved, strlen(resolved) + 1);
	snprintf(out->store_path, sizeof out->store_path, "%s/%s", out->data_dir, STORE_DB_FILE);
	return KMS_OK;
}
