/*
 * bench_report.c: kms-bench's output: a table for a human on stdout, and
 * one JSON line per run appended to --json FILE (docs/kms-bench.md, "The
 * JSON line").
 */
#include "clients/bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

const char *bench_error_name(size_t kind)
{
	if (kind == BENCH_ERROR_TIMEOUT)
		return "TIMEOUT";
	return kms_status_name((kms_status)kind);
}

static uint64_t items_of(const bench_config *cfg, const bench_result *r)
{
	uint64_t per = cfg->op == BENCH_OP_BATCH_DECRYPT ? cfg->batch : 1;
	return r->ok * per;
}

static double per_second(uint64_t n, double seconds)
{
	return seconds > 0.0 ? (double)n / seconds : 0.0;
}

/* Rounded to `digits` decimals, so the JSON reads 3084.7, not
 * 3084.6999999999998. */
static double rounded(double v, int digits)
{
	double scale = pow(10.0, digits);
	return round(v * scale) / scale;
}

void bench_report_table(const bench_config *cfg, const bench_result *r)
{
	uint64_t failed = r->requests - r->ok;
	printf("%s: %s over %s (%s), %u in flight", BENCH_PROG, bench_op_name(cfg->op),
	       cfg->transport, cfg->url, cfg->concurrency);
	if (cfg->connections > 1)
		printf(" on %u connections", cfg->connections);
	if (cfg->op == BENCH_OP_BATCH_DECRYPT)
		printf(", %u items a request", cfg->batch);
	printf(", %u-byte %s\n", cfg->plaintext_bytes,
	       bench_op_has_message(cfg->op) ? "messages" : "plaintexts");
	printf("  %-10s %-10s %-8s %-9s %-10s %-10s %-10s %-10s %-10s %-10s\n",
	       "requests", "ok", "failed", "seconds", "ops/s", "items/s", "p50 us", "p99 us",
	       "p99.9 us", "max us");
	printf("  %-10llu %-10llu %-8llu %-9.3f %-10.1f %-10.1f %-10.1f %-10.1f %-10.1f "
	       "%-10.1f\n",
	       (unsigned long long)r->requests, (unsigned long long)r->ok,
	       (unsigned long long)failed, r->seconds, per_second(r->requests, r->seconds),
	       per_second(items_of(cfg, r), r->seconds),
	       bench_hist_quantile_us(&r->hist, 0.50), bench_hist_quantile_us(&r->hist, 0.99),
	       bench_hist_quantile_us(&r->hist, 0.999), (double)r->hist.max_ns / 1000.0);
	printf("  kms-bench's own CPU: %.1f us per request\n", r->cpu_us_per_op);
	for (size_t k = 0; k < BENCH_ERROR_KINDS; k++)
		if (r->errors[k])
			printf("  errors %s: %llu\n", bench_error_name(k),
			       (unsigned long long)r->errors[k]);
	if (r->first_error[0])
		printf("  first error: %s\n", r->first_error);
	fflush(stdout);
}

static json_t *errors_json(const bench_result *r)
{
	json_t *o = json_object();
	for (size_t k = 0; o && k < BENCH_ERROR_KINDS; k++)
		if (r->errors[k] &&
		    json_object_set_new(o, bench_error_name(k),
		                        json_integer((json_int_t)r->errors[k])) != 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

static json_t *labels_json(const bench_config *cfg)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < cfg->labels.n; i++)
		if (json_object_set_new(o, cfg->labels.pairs[i].key,
		                        cli_json_str(cfg->labels.pairs[i].value)) != 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

static json_t *record_json(const bench_config *cfg, const bench_result *r)
{
	uint64_t items = items_of(cfg, r);
	return json_pack(
		"{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, "
		"s:f, s:f, s:f, s:o, s:o}",
		"tool", BENCH_PROG,
		"op", bench_op_name(cfg->op),
		"transport", cfg->transport,
		"concurrency", (json_int_t)cfg->concurrency,
		"batch_items", (json_int_t)(cfg->op == BENCH_OP_BATCH_DECRYPT ? cfg->batch : 0),
		"plaintext_bytes", (json_int_t)cfg->plaintext_bytes,
		"requests", (json_int_t)r->requests,
		"ok", (json_int_t)r->ok,
		"items", (json_int_t)items,
		"seconds", rounded(r->seconds, 3),
		"ops_per_s", rounded(per_second(r->requests, r->seconds), 1),
		"items_per_s", rounded(per_second(items, r->seconds), 1),
		"p50_us", rounded(bench_hist_quantile_us(&r->hist, 0.50), 1),
		"p99_us", rounded(bench_hist_quantile_us(&r->hist, 0.99), 1),
		"p999_us", rounded(bench_hist_quantile_us(&r->hist, 0.999), 1),
		"max_us", rounded((double)r->hist.max_ns / 1000.0, 1),
		"cpu_us_per_op", rounded(r->cpu_us_per_op, 1),
		"errors", errors_json(r),
		"labels", labels_json(cfg));
}

/* Appends line (with its newline) in one write: concurrent runs appending
 * to the same file do not interleave. */
static int append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot open %s to append the JSON line: %s\n", BENCH_PROG,
		        path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	size_t len = strlen(line);
	ssize_t n = write(fd, line, len);
	int saved = errno;
	if (close(fd) != 0 && n == (ssize_t)len) {
		n = -1;
		saved = errno;
	}
	if (n != (ssize_t)len) {
		fprintf(stderr, "%s: cannot write the JSON line to %s: %s\n", BENCH_PROG, path,
		        n < 0 ? strerror(saved) : "short write");
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

int bench_report_json(const bench_config *cfg, const bench_result *r)
{
	if (!cfg->json_path)
		return CLI_EXIT_OK;
	json_t *record = record_json(cfg, r);
	char *text = record ? json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER |
	                                         JSON_REAL_PRECISION(15))
	                    : NULL;
	json_decref(record);
	size_t len = text ? strlen(text) : 0;
	char *line = text ? malloc(len + 2) : NULL;
	if (!line) {
		free(text);
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		return CLI_EXIT_UNREACHABLE;
	}
	memcpy(line, text, len);
	line[len] = '\n';
	line[len + 1] = '\0';
	free(text);
	int code = append_line(cfg->json_path, line);
	free(line);
	return code;
}
