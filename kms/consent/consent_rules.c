/*
 * consent_rules.c: the checks of docs/consent.md's table, in its order.
 */
#include "kms/consent/consent_rules.h"

#include <string.h>

#include "common/rfc3339.h"

const char *consent_rules_check(const store_consent *c, const char *dp, const char *purpose,
                                int64_t now, consent_use use)
{
	if (c->manager_removed)
		return "consent_manager_removed";
	if (!strcmp(c->status, "REVOKED"))
		return "revoked";
	if (strcmp(c->status, "ACTIVE"))
		return "paused";
	if (now < c->start)
		return "not_yet_valid";
	if (now >= c->expiry)
		return "expired";
	if (strcmp(purpose, c->purpose))
		return "purpose_mismatch";
	if (strcmp(dp, c->dp))
		return "dp_mismatch";
	if (now >= c->data_life_end)
		return "data_life_ended";
	if (use == CONSENT_USE_OPEN) {
		if (c->onetime && c->uses > 0)
			return "onetime_used";
		int64_t start, max;
		consent_rules_window(c, now, &start, &max);
		if (max >= 0 && c->window_start == start && c->window_uses >= max)
			return "frequency_exceeded";
	}
	return NULL;
}

void consent_rules_window(const store_consent *c, int64_t now, int64_t *window_start,
                          int64_t *window_max)
{
	if (!strcmp(c->frequency_unit, "INF")) {
		*window_start = 0;
		*window_max = -1;
		return;
	}
	*window_start = rfc3339_period_start(now, c->frequency_unit);
	*window_max = c->frequency_value;
}

const char *consent_rules_explain(const char *reason)
{
	static const struct {
		const char *token, *text;
	} texts[] = {
		{ "missing_context", "the encryption context needs dp, purpose and consent" },
		{ "dp_not_pseudonym", "dp must be the data principal's pseudonym (kp_...): "
		                      "pseudonymize the identifier first" },
		{ "unknown_consent", "no such consent artefact was imported" },
		{ "consent_manager_removed", "its Consent Manager was removed" },
		{ "revoked", "it was revoked" },
		{ "paused", "it is paused" },
		{ "not_yet_valid", "its validity window has not started" },
		{ "expired", "it has expired" },
		{ "purpose_mismatch", "it was given for another purpose" },
		{ "dp_mismatch", "it was given by another data principal" },
		{ "data_life_ended", "its DataLife has ended" },
		{ "onetime_used", "it was ONETIME and has been used" },
		{ "frequency_exceeded", "its Frequency limit for this period is reached" },
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
		if (!strcmp(texts[i].token, reason))
			return texts[i].text;
	return "it does not allow this use";
}
