/*
 * nng_stats.c: a dialer's or listener's counters by its URL (nng_stats.h).
 */
#include "common/nng_stats.h"

#include <string.h>

/* Scopes nest socket > dialer/listener > pipe: a few levels at most. */
#define STAT_DEPTH_MAX 8

static nng_stat *find(nng_stat *s, const char *kind, const char *url, int depth)
{
	if (!s || depth > STAT_DEPTH_MAX)
		return NULL;
	if (nng_stat_type(s) == NNG_STAT_SCOPE && strcmp(nng_stat_name(s), kind) == 0) {
		for (nng_stat *c = nng_stat_child(s); c; c = nng_stat_next(c)) {
			const char *u = nng_stat_type(c) == NNG_STAT_STRING &&
			                strcmp(nng_stat_name(c), "url") == 0
			                        ? nng_stat_string(c) : NULL;
			if (u && strcmp(u, url) == 0)
				return s;
		}
		return NULL; /* no dialer holds another */
	}
	for (nng_stat *c = nng_stat_child(s); c; c = nng_stat_next(c)) {
		nng_stat *found = find(c, kind, url, depth + 1);
		if (found)
			return found;
	}
	return NULL;
}

nng_stat *kms_nng_stat_scope(nng_stat *all, const char *kind, const char *url)
{
	if (!kind || !url)
		return NULL;
	return find(all, kind, url, 0);
}

uint64_t kms_nng_stat_value(nng_stat *scope, const char *name)
{
	for (nng_stat *c = scope ? nng_stat_child(scope) : NULL; c; c = nng_stat_next(c)) {
		int type = nng_stat_type(c);
		if ((type == NNG_STAT_COUNTER || type == NNG_STAT_LEVEL) &&
		    strcmp(nng_stat_name(c), name) == 0)
			return nng_stat_value(c);
	}
	return 0;
}
