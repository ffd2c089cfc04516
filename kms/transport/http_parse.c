#include "kms/transport/http_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "common/error.h"

#define METHOD_MAX 16
#define INDEX_GROUP 1000u   /* a tile index is written in 3-digit groups */
#define LEVEL_DIGITS_MAX 2  /* tile levels 0..63 */
#define WIDTH_DIGITS_MAX 3  /* partial widths 1..255 */
#define HOST_MAX 64

size_t http_head_end(const char *buf, size_t len, size_t *scanned)
{
	/* Resume three bytes back: the terminator may straddle two reads. */
	size_t i = *scanned > 3 ? *scanned - 3 : 0;
	for (; i + 4 <= len; i++) {
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
			*scanned = i + 4;
			return i + 4;
		}
	}
	*scanned = len;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_tchar(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_target_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
	       c == '_' || c == '-' || c == '/';
}

/* ---- the tlog-tiles path grammar ---- */

/* Up to max_digits decimal digits at *p, no leading zero unless the number
 * is 0; advances *p. */
static bool take_small_number(const char **p, unsigned max_digits, unsigned *out)
{
	const char *s = *p;
	unsigned n = 0, digits = 0;
	while (is_digit(s[digits]) && digits < max_digits + 1) {
		n = n * 10 + (unsigned)(s[digits] - '0');
		digits++;
	}
	if (digits == 0 || digits > max_digits || (digits > 1 && s[0] == '0'))
		return false;
	*p = s + digits;
	*out = n;
	return true;
}

/* <N>: ("x" DDD "/")* DDD; advances *p. Overflow is refused. */
static bool take_index(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t index = 0;
	for (;;) {
		bool more = s[0] == 'x';
		if (more)
			s++;
		if (!is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]))
			return false;
		unsigned group = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
		                 (unsigned)(s[2] - '0');
		if (index > (UINT64_MAX - group) / INDEX_GROUP)
			return false;
		index = index * INDEX_GROUP + group;
		s += 3;
		if (!more)
			break;
		if (*s++ != '/')
			return false;
	}
	*p = s;
	*out = index;
	return true;
}

/* path is "tile/..." : a hash tile or an entry bundle in canonical form. */
static http_route tile_route(const char *path)
{
	static const char entries[] = "tile/entries/";
	const char *p = path + strlen("tile/");
	bool bundle = strncmp(path, entries, sizeof entries - 1) == 0;
	unsigned level = 0, width = TLOG_TILE_WIDTH;
	uint64_t index;
	if (bundle) {
		p = path + sizeof entries - 1;
	} else if (!take_small_number(&p, LEVEL_DIGITS_MAX, &level) || *p++ != '/') {
		return HTTP_ROUTE_NONE;
	}
	if (!take_index(&p, &index))
		return HTTP_ROUTE_NONE;
	if (!strncmp(p, ".p/", 3)) {
		p += 3;
		if (!take_small_number(&p, WIDTH_DIGITS_MAX, &width) || width == 0 ||
		    width >= TLOG_TILE_WIDTH)
			return HTTP_ROUTE_NONE;
	}
	if (*p != '\0')
		return HTTP_ROUTE_NONE;
	/* The writer's own spelling, byte for byte, or nothing. */
	char canonical[TLOG_TILE_PATH_MAX];
	kms_status st = bundle ? tlog_bundle_path(index, width, canonical)
	                       : tlog_tile_path(level, index, width, canonical);
	if (st != KMS_OK || strcmp(canonical, path) != 0)
		return HTTP_ROUTE_NONE;
	return width == TLOG_TILE_WIDTH ? HTTP_ROUTE_TILE_FULL : HTTP_ROUTE_TILE_PARTIAL;
}

/* The auditor page's targets: these exact strings, nothing else. */
static const struct {
	const char *target;
	http_page page;
} page_routes[] = {
	{ "/audit/", HTTP_PAGE_INDEX },
	{ "/audit/auditor.js", HTTP_PAGE_JS },
	{ "/audit/auditor.css", HTTP_PAGE_CSS },
};

http_route http_route_of(const char *target, char file[static TLOG_TILE_PATH_MAX],
                         http_page *page)
{
	static const char audit[] = "/audit/";
	file[0] = '\0';
	if (!strcmp(target, "/healthz"))
		return HTTP_ROUTE_HEALTHZ;
	if (!strcmp(target, "/metrics"))
		return HTTP_ROUTE_METRICS;
	for (size_t i = 0; i < sizeof page_routes / sizeof page_routes[0]; i++) {
		if (!strcmp(target, page_routes[i].target)) {
			*page = page_routes[i].page;
			return HTTP_ROUTE_PAGE;
		}
	}
	if (strncmp(target, audit, sizeof audit - 1) != 0)
		return HTTP_ROUTE_NONE;
	const char *path = target + sizeof audit - 1;
	if (strlen(path) >= TLOG_TILE_PATH_MAX)
		return HTTP_ROUTE_NONE;
	http_route route = HTTP_ROUTE_NONE;
	if (!strcmp(path, TLOG_CHECKPOINT_PATH))
		route = HTTP_ROUTE_CHECKPOINT;
	else if (!strncmp(path, "tile/", 5))
		route = tile_route(path);
	if (route != HTTP_ROUTE_NONE)
		strcpy(file, path); /* length checked above */
	return route;
}

/* ---- the request head ---- */

/* "name: value" with name a token; the value is not used. */
static bool header_line_ok(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && is_tchar(line[i]))
		i++;
	if (i == 0 || i == len || line[i] != ':')
		return false;
	for (; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
			return false;
	return true;
}

static int parse_method(const char *s, size_t len, http_method *out)
{
	if (len == 0 || len > METHOD_MAX)
		return 400;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar(s[i]))
			return 400;
	if (len == 3 && !memcmp(s, "GET", 3))
		*out = HTTP_GET;
	else if (len == 4 && !memcmp(s, "HEAD", 4))
		*out = HTTP_HEAD;
	else
		return 405;
	return 200;
}

static int parse_version(const char *s, size_t len)
{
	if (len == 8 && (!memcmp(s, "HTTP/1.1", 8) || !memcmp(s, "HTTP/1.0", 8)))
		return 200;
	if (len == 8 && !memcmp(s, "HTTP/", 5) && is_digit(s[5]) && s[6] == '.' && is_digit(s[7]))
		return 505;
	return 400;
}

static int parse_target(const char *s, size_t len, char out[static HTTP_TARGET_MAX + 1])
{
	if (len == 0 || s[0] != '/')
		return 400;
	for (size_t i = 0; i < len; i++)
		if (!is_target_char(s[i]))
			return 400;
	if (len > HTTP_TARGET_MAX)
		return 414;
	memcpy(out, s, len);
	out[len] = '\0';
	return 200;
}

/* "METHOD SP target SP version", line[0, len) without its CRLF. */
static int parse_request_line(const char *line, size_t len, http_request *out,
                              char target[static HTTP_TARGET_MAX + 1])
{
	const char *sp1 = memchr(line, ' ', len);
	if (!sp1)
		return 400;
	const char *rest = sp1 + 1;
	size_t rest_len = len - (size_t)(rest - line);
	const char *sp2 = memchr(rest, ' ', rest_len);
	if (!sp2)
		return 400;
	const char *version = sp2 + 1;
	size_t version_len = len - (size_t)(version - line);
	int status = parse_method(line, (size_t)(sp1 - line), &out->method);
	if (status == 200)
		status = parse_version(version, version_len);
	if (status == 200)
		status = parse_target(rest, (size_t)(sp2 - rest), target);
	return status;
}

int http_parse_head(const char *head, size_t len, http_request *out)
{
	memset(out, 0, sizeof *out);
	if (len < 4 || len > HTTP_HEAD_MAX || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
		return 400;
	char target[HTTP_TARGET_MAX + 1];
	size_t body_end = len - 2; /* the blank line's CRLF */
	size_t start = 0;
	bool first = true;
	while (start < body_end) {
		const char *cr = memchr(head + start, '\r', body_end - start);
		if (!cr || head + body_end - cr < 2 || cr[1] != '\n')
			return 400;
		size_t line_len = (size_t)(cr - (head + start));
		if (memchr(head + start, '\n', line_len) || memchr(head + start, '\0', line_len))
			return 400; /* a bare LF or a NUL inside a line */
		int status = first ? parse_request_line(head + start, line_len, out, target)
		                   : (header_line_ok(head + start, line_len) ? 200 : 400);
		if (status != 200)
			return status;
		first = false;
		start += line_len + 2;
	}
	if (first)
		return 400;
	out->route = http_route_of(target, out->file, &out->page);
	return 200;
}

/* ---- the listen URL ---- */

static bool parse_port(const char *s, in_port_t *out)
{
	unsigned long port = 0;
	size_t digits = 0;
	for (; is_digit(s[digits]) && digits < 6; digits++)
		port = port * 10 + (unsigned long)(s[digits] - '0');
	if (digits == 0 || digits > 5 || port == 0 || port > 65535)
		return false;
	if (!(s[digits] == '\0' || (s[digits] == '/' && s[digits + 1] == '\0')))
		return false;
	*out = htons((in_port_t)port);
	return true;
}

kms_status http_listen_parse(const char *url, struct sockaddr_storage *addr, socklen_t *addr_len,
                             bool *loopback)
{
	static const char scheme[] = "http://";
	memset(addr, 0, sizeof *addr);
	KMS_ENSURE(!strncmp(url, scheme, sizeof scheme - 1), KMS_INVALID_ARGUMENT,
	           "http URL %.200s: must start with http://", url);
	const char *host = url + sizeof scheme - 1;
	const char *host_end;
	char host_copy[HOST_MAX];
	bool v6 = host[0] == '[';
	if (v6) {
		host++;
		host_end = strchr(host, ']');
		KMS_ENSURE(host_end && host_end[1] == ':', KMS_INVALID_ARGUMENT,
		           "http URL %.200s: an IPv6 address is written [addr]:port", url);
	} else {
		host_end = strchr(host, ':');
		KMS_ENSURE(host_end, KMS_INVALID_ARGUMENT,
		           "http URL %.200s: needs a port, e.g. http://127.0.0.1:7480", url);
	}
	size_t host_len = (size_t)(host_end - host);
	KMS_ENSURE(host_len < sizeof host_copy, KMS_INVALID_ARGUMENT,
	           "http URL %.200s: host too long", url);
	memcpy(host_copy, host, host_len);
	host_copy[host_len] = '\0';
	const char *port = host_end + (v6 ? 2 : 1);
	in_port_t port_be;
	KMS_ENSURE(parse_port(port, &port_be), KMS_INVALID_ARGUMENT,
	           "http URL %.200s: the port must be 1 to 65535, with nothing after it", url);
	if (v6) {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)addr;
		sa->sin6_family = AF_INET6;
		sa->sin6_port = port_be;
		KMS_ENSURE(inet_pton(AF_INET6, host_copy, &sa->sin6_addr) == 1, KMS_INVALID_ARGUMENT,
		           "http URL %.200s: not an IPv6 address", url);
		*loopback = IN6_IS_ADDR_LOOPBACK(&sa->sin6_addr);
		*addr_len = sizeof *sa;
		return KMS_OK;
	}
	struct sockaddr_in *sa = (struct sockaddr_in *)addr;
	sa->sin_family = AF_INET;
	sa->sin_port = port_be;
	if (host_len == 0 || !strcmp(host_copy, "localhost"))
		sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		KMS_ENSURE(inet_pton(AF_INET, host_copy, &sa->sin_addr) == 1, KMS_INVALID_ARGUMENT,
		           "http URL %.200s: the host must be an IPv4 address, [IPv6] or localhost",
		           url);
	*loopback = (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
	*addr_len = sizeof *sa;
	return KMS_OK;
}
