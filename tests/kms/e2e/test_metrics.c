/*
 * test_metrics: kmsd's /metrics (docs/metrics.md) scraped from a real kmsd
 * on a real SoftHSM token, before and after a small workload.
 *
 * (1) well_formed: every line is a HELP, a TYPE or a sample of the
 *     Prometheus text format (metric and label names, quoted and escaped
 *     label values, a number); each family has one HELP and one TYPE,
 *     before its samples; no series twice; each histogram's buckets are in
 *     ascending le, cumulative, end in +Inf equal to _count, with a _sum;
 *     every family docs/metrics.md lists is present.
 * (2) counts_follow_the_workload: N encrypts move the encrypt OK counter
 *     by N; the encrypt latency histogram counts every encrypt answered;
 *     a request denied by a key policy moves the denied-by-principal
 *     counter of the caller by 1, throttled requests its throttled
 *     counter as much as kms_throttled_total; a tampered ciphertext moves
 *     an HSM error counter; every entry went through an audit batch (the
 *     batch sizes add up to the entries written) and every batch through
 *     an fsync; HSM attempts and key cache uses at least one per encrypt;
 *     nothing in flight once every reply is in.
 *
 * (3) docs_and_dashboard_match: docs/metrics.md documents every family
 *     /metrics has; it and docs/grafana-kms.json name no other.
 *
 * No durations are asserted: only presence, format and counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/group.h"
#include "tests/support/harness.h"

#define ENCRYPTS 10
#define THROTTLE_TRIES 400 /* generate_random calls at most, to exhaust the bucket */
#define HTTP_WAIT_MS 5000
#define LINE_MAX_LEN 1024
#define SERIES_MAX 4096

static harness H;
static int port;

/* Families docs/metrics.md documents as added for operators, with type. */
static const struct {
	const char *name, *type;
} families[] = {
	{ "kms_requests_total", "counter" },
	{ "kms_request_duration_seconds", "histogram" },
	{ "kms_requests_in_flight", "gauge" },
	{ "kms_authz_denied_total", "counter" },
	{ "kms_authz_denied_by_principal_total", "counter" },
	{ "kms_throttled_total", "counter" },
	{ "kms_throttled_by_principal_total", "counter" },
	{ "kms_audit_batch_entries", "histogram" },
	{ "kms_audit_fsync_duration_seconds", "histogram" },
	{ "kms_audit_queue_entries", "gauge" },
	{ "kms_audit_checkpoint_size", "gauge" },
	{ "kms_audit_unpublished_entries", "gauge" },
	{ "kms_audit_checkpoint_age_seconds", "gauge" },
	{ "kms_hsm_call_duration_seconds", "histogram" },
	{ "kms_hsm_errors_total", "counter" },
	{ "kms_hsm_sessions_open", "gauge" },
	{ "kms_hsm_sessions_opened_total", "counter" },
	{ "kms_hsm_sessions_lost_total", "counter" },
	{ "kms_key_cache_hits_total", "counter" },
	{ "kms_key_cache_misses_total", "counter" },
	{ "kms_key_cache_evictions_total", "counter" },
	{ "kms_audit_entries", "gauge" },
};

/* ---- scraping ---- */

static char *scrape(void)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/metrics", HTTP_WAIT_MS, &body, &len), 200);
	assert_non_null(body);
	assert_int_equal(strlen(body), len);
	return body;
}

/* The value of the sample whose name and labels are exactly series
 * (`name` or `name{a="b"}`), or 0 when it is absent (a counter not yet
 * moved is not printed). */
static double value_of(const char *body, const char *series)
{
	size_t n = strlen(series);
	for (const char *line = body; line && *line;) {
		if (!strncmp(line, series, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return 0;
}

/* The sum of every sample of name whatever its labels. */
static double sum_of(const char *body, const char *name)
{
	size_t n = strlen(name);
	double sum = 0;
	for (const char *line = body; line && *line;) {
		if (!strncmp(line, name, n) && (line[n] == '{' || line[n] == ' ')) {
			const char *sp = strchr(line, ' ');
			if (line[n] == '{')
				sp = strstr(line, "} ") ? strstr(line, "} ") + 1 : NULL;
			if (sp)
				sum += strtod(sp + 1, NULL);
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return sum;
}

/* ---- the text format ---- */

typedef struct family {
	char name[128];
	char type[16];
	bool help, typed;
} family;

typedef struct checker {
	family fam[256];
	size_t n_fam;
	char *series[SERIES_MAX];
	size_t n_series;
	/* The histogram series being read: its family and labels without le. */
	char hist_key[LINE_MAX_LEN];
	double last_le, last_bucket;
	bool in_hist, saw_inf;
	double inf_count;
} checker;

static family *family_get(checker *c, const char *name)
{
	for (size_t i = 0; i < c->n_fam; i++) {
		if (!strcmp(c->fam[i].name, name))
			return &c->fam[i];
	}
	assert_true(c->n_fam < sizeof c->fam / sizeof c->fam[0]);
	family *f = &c->fam[c->n_fam++];
	memset(f, 0, sizeof *f);
	snprintf(f->name, sizeof f->name, "%s", name);
	return f;
}

static bool name_ok(const char *s, size_t n)
{
	if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return false;
	for (size_t i = 1; i < n; i++) {
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
			return false;
	}
	return true;
}

static bool value_ok(const char *s)
{
	if (!strcmp(s, "+Inf") || !strcmp(s, "-Inf") || !strcmp(s, "NaN"))
		return true;
	char *end;
	(void)strtod(s, &end);
	return end != s && *end == '\0';
}

/* Parses `{a="x",b="y"}` at *p; the label set without le into key (after
 * name), le's value into le (or "" when none). */
static void parse_labels(const char **p, const char *line, char *key, size_t key_cap,
                         char *le, size_t le_cap)
{
	const char *s = *p;
	le[0] = '\0';
	if (*s != '{')
		return;
	s++;
	size_t k = strlen(key);
	bool first = true;
	while (*s != '}') {
		const char *name = s;
		while (*s && *s != '=')
			s++;
		if (*s != '=' || !name_ok(name, (size_t)(s - name)) || s[1] != '"')
			fail_msg("/metrics: bad label name in: %s", line);
		size_t name_len = (size_t)(s - name);
		s += 2;
		char value[LINE_MAX_LEN];
		size_t v = 0;
		while (*s && *s != '"') {
			if (*s == '\\') {
				if (s[1] != '\\' && s[1] != '"' && s[1] != 'n')
					fail_msg("/metrics: bad escape in: %s", line);
				value[v++] = *s++;
			}
			value[v++] = *s++;
			assert_true(v + 2 < sizeof value);
		}
		value[v] = '\0';
		if (*s != '"')
			fail_msg("/metrics: unterminated label value in: %s", line);
		s++;
		if (name_len == 2 && !strncmp(name, "le", 2)) {
			snprintf(le, le_cap, "%s", value);
		} else {
			k += (size_t)snprintf(key + k, key_cap - k, "%s%.*s=\"%s\"", first ? "{" : ",",
			                      (int)name_len, name, value);
			assert_true(k < key_cap);
			first = false;
		}
		if (*s == ',')
			s++;
		else if (*s != '}')
			fail_msg("/metrics: bad label list in: %s", line);
	}
	if (!first)
		snprintf(key + k, key_cap - k, "}");
	*p = s + 1;
}

static void series_once(checker *c, const char *line, size_t len)
{
	for (size_t i = 0; i < c->n_series; i++) {
		if (strlen(c->series[i]) == len && !strncmp(c->series[i], line, len))
			fail_msg("/metrics: series twice: %.*s", (int)len, line);
	}
	assert_true(c->n_series < SERIES_MAX);
	c->series[c->n_series] = strndup(line, len);
	assert_non_null(c->series[c->n_series]);
	c->n_series++;
}

static void hist_end(checker *c)
{
	if (c->in_hist && !c->saw_inf)
		fail_msg("/metrics: histogram %s has no +Inf bucket", c->hist_key);
	c->in_hist = false;
}

/* A _bucket sample of the histogram series key. */
static void hist_bucket(checker *c, const char *key, const char *le, double value,
                        const char *line)
{
	if (!c->in_hist || strcmp(c->hist_key, key)) {
		hist_end(c);
		c->in_hist = true;
		c->saw_inf = false;
		c->last_le = -INFINITY;
		c->last_bucket = 0;
		snprintf(c->hist_key, sizeof c->hist_key, "%s", key);
	}
	if (c->saw_inf)
		fail_msg("/metrics: a bucket after +Inf: %s", line);
	double bound = !strcmp(le, "+Inf") ? INFINITY : strtod(le, NULL);
	if (!value_ok(le) || bound <= c->last_le)
		fail_msg("/metrics: le not ascending: %s", line);
	if (value < c->last_bucket)
		fail_msg("/metrics: buckets not cumulative: %s", line);
	c->last_le = bound;
	c->last_bucket = value;
	if (isinf(bound)) {
		c->saw_inf = true;
		c->inf_count = value;
	}
}

/* A _count or _sum sample of a histogram: after its buckets. */
static void hist_tail(checker *c, const char *key, const char *suffix, double value,
                      const char *line)
{
	if (!c->saw_inf || strcmp(c->hist_key, key))
		fail_msg("/metrics: %s before its buckets: %s", suffix, line);
	if (!strcmp(suffix, "_count") && value != c->inf_count)
		fail_msg("/metrics: _count is not the +Inf bucket: %s", line);
}

/* The family a sample name belongs to, and its histogram suffix if any. */
static family *sample_family(checker *c, const char *name, const char **suffix)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	*suffix = NULL;
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(name), s = strlen(suffixes[i]);
		if (n > s && !strcmp(name + n - s, suffixes[i])) {
			char base[128];
			snprintf(base, sizeof base, "%.*s", (int)(n - s), name);
			for (size_t j = 0; j < c->n_fam; j++) {
				if (!strcmp(c->fam[j].name, base) && !strcmp(c->fam[j].type, "histogram")) {
					*suffix = suffixes[i];
					return &c->fam[j];
				}
			}
		}
	}
	for (size_t j = 0; j < c->n_fam; j++) {
		if (!strcmp(c->fam[j].name, name))
			return &c->fam[j];
	}
	return NULL;
}

static void check_sample(checker *c, const char *line)
{
	const char *p = line;
	while (*p && *p != '{' && *p != ' ')
		p++;
	char name[128];
	assert_true((size_t)(p - line) < sizeof name);
	snprintf(name, sizeof name, "%.*s", (int)(p - line), line);
	if (!name_ok(name, strlen(name)))
		fail_msg("/metrics: bad metric name: %s", line);
	const char *suffix;
	family *f = sample_family(c, name, &suffix);
	if (!f || !f->typed || !f->help)
		fail_msg("/metrics: a sample before its HELP and TYPE: %s", line);
	char key[LINE_MAX_LEN], le[LINE_MAX_LEN];
	snprintf(key, sizeof key, "%s", f->name);
	parse_labels(&p, line, key, sizeof key, le, sizeof le);
	if (*p != ' ' || !value_ok(p + 1))
		fail_msg("/metrics: bad value: %s", line);
	series_once(c, line, (size_t)(p - line));
	double value = strtod(p + 1, NULL);
	if (suffix && !strcmp(suffix, "_bucket")) {
		if (!le[0])
			fail_msg("/metrics: a bucket without le: %s", line);
		hist_bucket(c, key, le, value, line);
	} else if (suffix) {
		hist_tail(c, key, suffix, value, line);
	} else {
		if (!strcmp(f->type, "histogram"))
			fail_msg("/metrics: a histogram sample without suffix: %s", line);
		hist_end(c);
	}
}

static void check_comment(checker *c, const char *line)
{
	char word[8], name[128];
	int used = 0;
	if (sscanf(line, "# %7s %127s %n", word, name, &used) < 2)
		fail_msg("/metrics: bad comment: %s", line);
	if (!name_ok(name, strlen(name)))
		fail_msg("/metrics: bad family name: %s", line);
	family *f = family_get(c, name);
	if (!strcmp(word, "HELP")) {
		if (f->help || f->typed)
			fail_msg("/metrics: HELP twice or after TYPE: %s", line);
		f->help = true;
	} else if (!strcmp(word, "TYPE")) {
		const char *type = line + used;
		if (f->typed || (strcmp(type, "counter") && strcmp(type, "gauge") &&
		                 strcmp(type, "histogram") && strcmp(type, "summary") &&
		                 strcmp(type, "untyped")))
			fail_msg("/metrics: TYPE twice or unknown: %s", line);
		snprintf(f->type, sizeof f->type, "%s", type);
		f->typed = true;
	} else {
		fail_msg("/metrics: comment neither HELP nor TYPE: %s", line);
	}
	hist_end(c);
}

static void check_format(const char *body)
{
	checker *c = calloc(1, sizeof *c);
	assert_non_null(c);
	size_t lines = 0;
	for (const char *line = body; *line;) {
		const char *end = strchr(line, '\n');
		if (!end)
			fail_msg("/metrics: the last line has no newline");
		char buf[LINE_MAX_LEN];
		assert_true((size_t)(end - line) < sizeof buf);
		snprintf(buf, sizeof buf, "%.*s", (int)(end - line), line);
		if (!buf[0])
			fail_msg("/metrics: an empty line");
		if (buf[0] == '#')
			check_comment(c, buf);
		else
			check_sample(c, buf);
		lines++;
		line = end + 1;
	}
	hist_end(c);
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
		family *f = NULL;
		for (size_t j = 0; j < c->n_fam; j++) {
			if (!strcmp(c->fam[j].name, families[i].name))
				f = &c->fam[j];
		}
		if (!f || strcmp(f->type, families[i].type))
			fail_msg("/metrics: family %s (%s) missing or of another type", families[i].name,
			         families[i].type);
	}
	printf("measured: /metrics %zu lines, %zu families, %zu series\n", lines, c->n_fam,
	       c->n_series);
	for (size_t i = 0; i < c->n_series; i++)
		free(c->series[i]);
	free(c);
}

/* ---- the workload ---- */

static void start(void)
{
	if (port)
		return;
	port = harness_free_port();
	assert_true(port > 0);
	/* A bucket large enough for the workload, small enough to empty. */
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\nhttp = http://127.0.0.1:%d\n"
	         "[limits]\nprincipal_rate = 1\nprincipal_burst = 60\n", port);
	harness_options o = { .extra_config = extra };
	assert_true(harness_start(&H, &o));
}

static Kms__Response *call(Kms__Request *req)
{
	Kms__Response *r = harness_call(&H, req);
	assert_non_null(r);
	return r;
}

static void put_policy(const char *key, const char *policy)
{
	Kms__PutKeyPolicyRequest p = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	p.key_id = (char *)(uintptr_t)key;
	p.policy = (char *)(uintptr_t)policy;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &p;
	Kms__Response *r = call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("put_key_policy: %s", r->message);
	kms__response__free_unpacked(r, NULL);
}

static void well_formed(void **state)
{
	(void)state;
	start();
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	char why[256];
	if (!e2e_roundtrip(&H, key, why, sizeof why))
		fail_msg("%s", why);
	char *body = scrape();
	check_format(body);
	free(body);
}

/* kms_requests_total of encrypt, every status. */
static double encrypts_answered(const char *body)
{
	static const char prefix[] = "kms_requests_total{operation=\"encrypt\",";
	double n = 0;
	for (const char *line = body; line && *line;) {
		const char *end = strstr(line, "} ");
		if (!strncmp(line, prefix, sizeof prefix - 1) && end)
			n += strtod(end + 2, NULL);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return n;
}

/* The counts that a scrape before and one after should differ by. */
typedef struct deltas {
	double encrypt_ok, encrypt_answered, encrypt_hist, denied, throttled, throttled_total;
	double hsm_errors, hsm_attempts, key_uses, entries, batch_sum, batches, fsyncs;
} deltas;

static void read_deltas(const char *before, const char *after, deltas *d)
{
#define DELTA_V(series) (value_of(after, series) - value_of(before, series))
#define DELTA_S(name) (sum_of(after, name) - sum_of(before, name))
	d->encrypt_ok = DELTA_V("kms_requests_total{operation=\"encrypt\",status=\"OK\"}");
	d->encrypt_answered = encrypts_answered(after) - encrypts_answered(before);
	d->encrypt_hist = DELTA_V("kms_request_duration_seconds_count{operation=\"encrypt\"}");
	d->denied = DELTA_V("kms_authz_denied_by_principal_total{principal=\"" HARNESS_ADMIN "\"}");
	d->throttled =
	        DELTA_V("kms_throttled_by_principal_total{principal=\"" HARNESS_ADMIN "\"}");
	d->throttled_total = DELTA_S("kms_throttled_total");
	d->hsm_errors = DELTA_S("kms_hsm_errors_total");
	d->hsm_attempts = DELTA_V("kms_hsm_call_duration_seconds_count");
	d->key_uses = DELTA_V("kms_key_cache_hits_total") + DELTA_V("kms_key_cache_misses_total");
	d->entries = DELTA_V("kms_audit_entries");
	d->batch_sum = DELTA_V("kms_audit_batch_entries_sum");
	d->batches = DELTA_V("kms_audit_batch_entries_count");
	d->fsyncs = DELTA_V("kms_audit_fsync_duration_seconds_count");
#undef DELTA_V
#undef DELTA_S
}

/* Generates one random byte; the status. */
static Kms__Status random_byte(void)
{
	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	gr.number_of_bytes = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	Kms__Response *r = call(&req);
	Kms__Status st = r->status;
	kms__response__free_unpacked(r, NULL);
	return st;
}

/* A policy that lets test-admin do nothing with the key. */
static const char nothing_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Principal\":\"someone-else\",\"Action\":\"encrypt\"}]}";

/* N encrypts, a decrypt of a tampered blob, an encrypt denied by the key's
 * policy, then generate_random until throttled (bounded). */
static void workload(const char *key, const char *denied_key, int *throttled)
{
	static const uint8_t plaintext[] = "count me";
	Kms__Response *last = NULL;
	for (int i = 0; i < ENCRYPTS; i++) {
		if (last)
			kms__response__free_unpacked(last, NULL);
		last = e2e_encrypt(&H, key, plaintext, sizeof plaintext - 1);
		assert_non_null(last);
		if (last->status != KMS__STATUS__OK)
			fail_msg("encrypt %d: %s", i, last->message);
	}
	ProtobufCBinaryData *blob = &last->encrypt->ciphertext_blob;
	blob->data[blob->len - 1] ^= 0x01; /* the GCM tag */
	Kms__Response *r = e2e_decrypt(&H, blob->data, blob->len);
	assert_non_null(r);
	assert_int_not_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	kms__response__free_unpacked(last, NULL);

	r = e2e_encrypt(&H, denied_key, plaintext, sizeof plaintext - 1);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__ACCESS_DENIED);
	kms__response__free_unpacked(r, NULL);

	*throttled = 0;
	for (int i = 0; i < THROTTLE_TRIES && !*throttled; i++) {
		Kms__Status st = random_byte();
		if (st == KMS__STATUS__THROTTLED)
			(*throttled)++;
		else
			assert_int_equal(st, KMS__STATUS__OK);
	}
	if (!*throttled)
		fail_msg("no request throttled in %d tries", THROTTLE_TRIES);
}

static void counts_follow_the_workload(void **state)
{
	(void)state;
	start();
	char key[35], denied_key[35];
	assert_true(harness_create_key(&H, NULL, key));
	assert_true(harness_create_key(&H, NULL, denied_key));
	put_policy(denied_key, nothing_policy);
	char *before = scrape();
	int throttled = 0;
	workload(key, denied_key, &throttled);
	char *after = scrape();
	check_format(after);
	deltas d;
	read_deltas(before, after, &d);
	printf("measured: encrypt OK +%.0f, encrypt answered +%.0f (histogram +%.0f), denied +%.0f, "
	       "throttled +%.0f (total +%.0f), hsm errors +%.0f, hsm attempts +%.0f, key cache "
	       "uses +%.0f, audit entries +%.0f in %.0f batches (%.0f entries, %.0f fsyncs)\n",
	       d.encrypt_ok, d.encrypt_answered, d.encrypt_hist, d.denied, d.throttled,
	       d.throttled_total, d.hsm_errors, d.hsm_attempts, d.key_uses, d.entries, d.batches,
	       d.batch_sum, d.fsyncs);
	for (const char *l = after; (l = strstr(l, "\nkms_hsm_errors_total{")) != NULL; l++)
		printf("measured: %.*s\n", (int)strcspn(l + 1, "\n"), l + 1);
	assert_true(d.encrypt_ok == ENCRYPTS);
	assert_true(d.encrypt_answered == ENCRYPTS + 1); /* and the denied one */
	assert_true(d.encrypt_hist == d.encrypt_answered);
	assert_true(d.denied == 1);
	assert_true(d.throttled == throttled);
	assert_true(d.throttled_total == throttled);
	assert_true(d.hsm_errors >= 1);   /* the tampered tag */
	assert_true(d.hsm_attempts >= ENCRYPTS);
	assert_true(d.key_uses >= ENCRYPTS);
	assert_true(d.entries >= ENCRYPTS + 2);
	assert_true(d.batch_sum == d.entries);
	/* One fsync per batch: the workload changes nothing, so no batch holds
	 * an outcome beside other entries (written as two). */
	assert_true(d.batches >= 1 && d.fsyncs == d.batches);
	/* Every reply is in: nothing in flight, nothing waiting for the writer. */
	assert_true(value_of(after, "kms_requests_in_flight") == 0);
	assert_true(value_of(after, "kms_audit_queue_entries") == 0);
	assert_true(value_of(after, "kms_hsm_sessions_open") >= 1);
	assert_true(value_of(after, "kms_hsm_sessions_opened_total") >=
	            value_of(after, "kms_hsm_sessions_open"));
	assert_true(value_of(after, "kms_audit_checkpoint_size") <=
	            value_of(after, "kms_audit_entries"));
	assert_true(value_of(after, "kms_audit_checkpoint_age_seconds") >= 0);
	free(before);
	free(after);
}

/* Whether the scrape has a family called name, or name is a histogram
 * family's _bucket, _sum or _count. */
static bool family_exists(const char *body, const char *name)
{
	char needle[160];
	snprintf(needle, sizeof needle, "\n# TYPE %s ", name);
	if (strstr(body, needle))
		return true;
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	size_t n = strlen(name);
	for (size_t i = 0; i < 3; i++) {
		size_t k = strlen(suffixes[i]);
		if (n > k && !strcmp(name + n - k, suffixes[i])) {
			snprintf(needle, sizeof needle, "\n# TYPE %.*s histogram\n", (int)(n - k), name);
			if (strstr(body, needle))
				return true;
		}
	}
	return false;
}

/* Every kms_... name the file mentions is a family of the scrape; returns
 * how many names it checked. */
static size_t names_exist(const char *file, const char *body)
{
	size_t len = 0, checked = 0;
	char *text = harness_read_file(file, &len);
	if (!text)
		fail_msg("cannot read %s", file);
	for (const char *p = text; (p = strstr(p, "kms_")) != NULL;) {
		bool word_start = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
		size_t n = 0;
		while (isalnum((unsigned char)p[n]) || p[n] == '_')
			n++;
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)n, p);
		p += n;
		if (!word_start || name[n - 1] == '_') /* kms_audit_* and the like */
			continue;
		if (!family_exists(body, name))
			fail_msg("%s names %s, which /metrics does not have", file, name);
		checked++;
	}
	free(text);
	return checked;
}

/* docs/metrics.md documents every family /metrics has, and it and the
 * Grafana dashboard name only families /metrics has. */
static void docs_and_dashboard_match(void **state)
{
	(void)state;
	start();
	const char *docs = getenv("KMS_TEST_DOCS");
	assert_non_null(docs);
	char md[600], dash[600];
	snprintf(md, sizeof md, "%s/metrics.md", docs);
	snprintf(dash, sizeof dash, "%s/grafana-kms.json", docs);
	char *body = scrape();
	size_t in_md = names_exist(md, body), in_dash = names_exist(dash, body);
	size_t len = 0;
	char *text = harness_read_file(md, &len);
	assert_non_null(text);
	size_t families_seen = 0;
	for (const char *p = body; (p = strstr(p, "# TYPE ")) != NULL; families_seen++) {
		p += strlen("# TYPE ");
		char needle[160];
		snprintf(needle, sizeof needle, "`%.*s`", (int)strcspn(p, " "), p);
		if (!strstr(text, needle))
			fail_msg("docs/metrics.md does not document %s", needle);
	}
	printf("measured: %zu families all documented; names checked: %zu in metrics.md, %zu in "
	       "the dashboard\n", families_seen, in_md, in_dash);
	free(text);
	free(body);
}

static int teardown(void **state)
{
	(void)state;
	return port ? (harness_stop(&H) == 0 ? 0 : -1) : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(well_formed),
		cmocka_unit_test(counts_follow_the_workload),
		cmocka_unit_test(docs_and_dashboard_match),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
