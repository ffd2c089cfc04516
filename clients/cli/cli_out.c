/*
 * cli_out.c: aligned text and JSON output. Every string that came from the
 * server reaches a terminal through cli_escape: control and bidi characters
 * as visible escapes. JSON output escapes all that is not ASCII (jansson's
 * JSON_ENSURE_ASCII), so it stays valid JSON with the same characters
 * escaped.
 */
#include "clients/cli/cli.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kms/secmem.h>

#include "common/utf8.h"

#define CLI_FIELD_WIDTH 22

/* C0 and C1 controls and DEL move the cursor, clear the screen or set the
 * title; the Unicode bidi controls reorder what follows them, so that a
 * description can make "k-1..." read as another key id, or hide text. */
static bool must_escape(uint32_t cp, bool keep_lines)
{
	if (keep_lines && (cp == '\n' || cp == '\t'))
		return false;
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
	       cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

char *cli_escape(const char *s, bool keep_lines)
{
	const uint8_t *in = (const uint8_t *)(s ? s : "");
	size_t len = strlen((const char *)in);
	/* At most 6 bytes ("\u202e") for each input byte, and the NUL. */
	if (len > (SIZE_MAX - 1) / 6)
		return NULL;
	char *out = malloc(6 * len + 1);
	if (!out)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		size_t at = i;
		uint32_t cp;
		if (!kms_utf8_next(in, len, &i, &cp)) {
			n += (size_t)sprintf(out + n, "\\x%02x", in[i]); /* not UTF-8 */
			i++;
		} else if (must_escape(cp, keep_lines)) {
			n += (size_t)sprintf(out + n, "\\u%04x", (unsigned)cp);
		} else {
			memcpy(out + n, in + at, i - at);
			n += i - at;
		}
	}
	out[n] = '\0';
	return out;
}

static void put_escaped(FILE *to, const char *s, bool keep_lines)
{
	char *shown = cli_escape(s, keep_lines);
	if (shown) {
		fputs(shown, to);
		free(shown);
		return;
	}
	for (; s && *s; s++) /* out of memory: ASCII only, the rest as '?' */
		fputc((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f ? '?' : *s, to);
}

void cli_put_clean(FILE *to, const char *s)
{
	put_escaped(to, s, false);
}

void cli_put_lines(FILE *to, const char *s)
{
	put_escaped(to, s, true);
}

const char *cli_time(int64_t unix_seconds, char buf[CLI_TIME_MAX])
{
	struct tm tm;
	time_t t = (time_t)unix_seconds;
	if (unix_seconds == 0 || !gmtime_r(&t, &tm) ||
	    strftime(buf, CLI_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, CLI_TIME_MAX, "-");
	return buf;
}

void cli_field(FILE *to, const char *label, const char *value)
{
	char with_colon[64];
	/* An empty label continues the field above. */
	snprintf(with_colon, sizeof with_colon, "%s%s", label, label[0] ? ":" : "");
	fprintf(to, "%-*s ", CLI_FIELD_WIDTH, with_colon);
	cli_put_clean(to, value);
	fputc('\n', to);
}

void cli_field_fmt(FILE *to, const char *label, const char *fmt, ...)
{
	char value[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	cli_field(to, label, value);
}

/* ---- tables ---- */

/* Columns on a terminal: UTF-8 code points (wide glyphs are rare in ids). */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static char *clean_copy(const char *s)
{
	return cli_escape(s, false);
}

bool cli_table_init(struct cli_table *t, size_t n_cols, const char *const *headers)
{
	memset(t, 0, sizeof *t);
	t->n_cols = n_cols;
	return cli_table_add(t, headers);
}

bool cli_table_add(struct cli_table *t, const char *const *cells)
{
	if (t->n_rows == t->cap_rows) {
		size_t cap = t->cap_rows ? 2 * t->cap_rows : 16;
		char **grown = reallocarray(t->cells, cap * t->n_cols, sizeof *grown);
		if (!grown)
			return false;
		t->cells = grown;
		t->cap_rows = cap;
	}
	char **row = t->cells + t->n_rows * t->n_cols;
	for (size_t c = 0; c < t->n_cols; c++) {
		row[c] = clean_copy(cells[c]);
		if (!row[c]) {
			while (c-- > 0)
				free(row[c]);
			return false;
		}
	}
	t->n_rows++;
	return true;
}

void cli_table_print(const struct cli_table *t, FILE *to)
{
	size_t widths[16] = { 0 };
	size_t n_cols = t->n_cols < 16 ? t->n_cols : 16;
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < n_cols; c++) {
			size_t w = display_width(t->cells[r * t->n_cols + c]);
			if (w > widths[c])
				widths[c] = w;
		}
	for (size_t r = 0; r < t->n_rows; r++) {
		for (size_t c = 0; c < n_cols; c++) {
			const char *cell = t->cells[r * t->n_cols + c];
			fputs(cell, to);
			if (c + 1 < n_cols)
				fprintf(to, "%*s", (int)(widths[c] - display_width(cell) + 2), "");
		}
		fputc('\n', to);
	}
}

void cli_table_free(struct cli_table *t)
{
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof *t);
}

/* ---- progress ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cli_progress_start(struct cli *cli, struct cli_progress *p, bool enabled, uint64_t total)
{
	memset(p, 0, sizeof *p);
	/* A memory stream (--json, tests) has no descriptor: never a terminal. */
	int fd = fileno(cli->err);
	if (!enabled || fd < 0 || !isatty(fd))
		return;
	p->to = cli->err;
	p->total = total;
	p->start_ns = p->drawn_ns = now_ns();
}

/* "12.3 MiB": the sizes the line shows. */
static void size_text(uint64_t bytes, char *out, size_t cap)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void cli_progress_add(struct cli_progress *p, uint64_t bytes)
{
	if (!p->to)
		return;
	p->done += bytes;
	uint64_t now = now_ns();
	if (now - p->drawn_ns < 100000000u) /* ten redraws a second at most */
		return;
	p->drawn_ns = now;
	double secs = (double)(now - p->start_ns) / 1e9;
	double rate = secs > 0 ? (double)p->done / secs : 0; /* bytes a second */
	char done[32], total[32], eta[32] = "--:--";
	size_text(p->done, done, sizeof done);
	size_text(p->total, total, sizeof total);
	if (rate > 0 && p->total >= p->done) {
		uint64_t left = (uint64_t)((double)(p->total - p->done) / rate);
		if (left < 100 * 3600)
			snprintf(eta, sizeof eta, "%u:%02u:%02u", (unsigned)(left / 3600),
			         (unsigned)(left / 60 % 60), (unsigned)(left % 60));
	}
	unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;
	/* \r and erase-to-end: the line is redrawn in place. */
	fprintf(p->to, "\r\033[K%s / %s  %3u%%  %.1f MB/s  ETA %s", done, total,
	        pct > 100 ? 100 : pct, rate / 1e6, eta);
	fflush(p->to);
	p->shown = true;
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->to && p->shown) {
		fputs("\r\033[K", p->to);
		fflush(p->to);
	}
	p->to = NULL;
	p->shown = false;
}

/* ---- JSON ---- */

json_t *cli_json_str(const char *s)
{
	json_t *j = json_string(s ? s : "");
	if (j)
		return j;
	/* Not UTF-8: keep the ASCII, mark the rest. */
	char *ascii = strdup(s);
	if (!ascii)
		return NULL;
	for (char *p = ascii; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(ascii);
	free(ascii);
	return j;
}

int cli_json_print(struct cli *cli, json_t *json)
{
	return cli_json_write(cli, NULL, json);
}

/* JSON_ENSURE_ASCII escapes every control character but DEL (0x7f), which
 * JSON allows raw; the CLIs show no control character raw (cli_escape).
 * DEL can only stand inside a string, where "\u007f" is the same text.
 * Writes in[0..len) so escaped into out (NULL: only counts); returns the
 * length. */
static size_t json_escape_del(const char *in, size_t len, char *out)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == 0x7f) {
			if (out)
				memcpy(out + n, "\\u007f", 6);
			n += 6;
		} else {
			if (out)
				out[n] = in[i];
			n++;
		}
	}
	return n;
}

static int json_dump_del_escaped(const char *buffer, size_t size, void *data)
{
	FILE *to = data;
	size_t start = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i < size && buffer[i] != 0x7f)
			continue;
		if (i > start && fwrite(buffer + start, 1, i - start, to) != i - start)
			return -1;
		if (i < size && fputs("\\u007f", to) == EOF)
			return -1;
		start = i + 1;
	}
	return 0;
}

int cli_json_dump(json_t *json, FILE *to, size_t flags)
{
	return json_dump_callback(json, json_dump_del_escaped, to, flags | JSON_ENSURE_ASCII);
}

int cli_json_write(struct cli *cli, const char *path, json_t *json)
{
	enum { FLAGS = JSON_INDENT(2) | JSON_ENSURE_ASCII };
	size_t len = json ? json_dumpb(json, NULL, 0, FLAGS) : 0;
	char *text = len ? kms_secure_alloc(len + 1) : NULL;
	if (!text || json_dumpb(json, text, len, FLAGS) != len) {
		json_decref(json);
		kms_secure_free(text);
		return cli_out_of_memory(cli);
	}
	json_decref(json);
	size_t shown_len = json_escape_del(text, len, NULL);
	if (shown_len != len) {
		char *shown = kms_secure_alloc(shown_len + 1);
		if (!shown) {
			kms_secure_free(text);
			return cli_out_of_memory(cli);
		}
		json_escape_del(text, len, shown);
		kms_secure_free(text);
		text = shown;
		len = shown_len;
	}
	text[len] = '\n';
	int code = cli_write_output(cli, path, text, len + 1);
	kms_secure_free(text);
	return code;
}

#define JSON_HEADER alignof(max_align_t)

static void *json_wiping_malloc(size_t size)
{
	if (size > SIZE_MAX - JSON_HEADER)
		return NULL;
	unsigned char *block = malloc(JSON_HEADER + size);
	if (!block)
		return NULL;
	memcpy(block, &size, sizeof size);
	return block + JSON_HEADER;
}

static void json_wiping_free(void *p)
{
	if (!p)
		return;
	unsigned char *block = (unsigned char *)p - JSON_HEADER;
	size_t size;
	memcpy(&size, block, sizeof size);
	kms_wipe(p, size);
	free(block);
}

void cli_json_wipe_on_free(void)
{
	json_set_alloc_funcs(json_wiping_malloc, json_wiping_free);
}
