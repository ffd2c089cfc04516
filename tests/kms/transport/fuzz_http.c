/*
 * fuzz_http: what kmsd's HTTP endpoint parses from a peer and the config
 * (kms/transport/http_parse.h).
 *
 * Input: a mode byte (mod 2), then
 *   0: bytes as they arrive on a connection: the head is found twice, in
 *      one read and split in two at a point the next byte chooses, and then
 *      parsed;
 *   1: a listen URL.
 *
 * Invariants: nothing read outside the input (ASan); the head's end does
 * not depend on how the bytes were split; a parsed request is GET or HEAD,
 * and a file it names is a canonical published path: asking for
 * "/audit/<file>" names the same route and file again, and no component
 * of it is empty or starts with '.'; the auditor page's route names one
 * of its files and no published file.
 */
#include <stdbool.h>
#include <string.h>

#include "kms/transport/http_parse.h"
#include "tests/support/fuzz.h"

#define MODES 2

static char head[HTTP_HEAD_MAX];

static void check_file(const http_request *req)
{
	if (req->route == HTTP_ROUTE_PAGE)
		FUZZ_CHECK(req->page < HTTP_PAGE_COUNT);
	if (req->route != HTTP_ROUTE_CHECKPOINT && req->route != HTTP_ROUTE_TILE_FULL &&
	    req->route != HTTP_ROUTE_TILE_PARTIAL) {
		FUZZ_CHECK(req->file[0] == '\0');
		return;
	}
	char target[HTTP_TARGET_MAX + 1], again[TLOG_TILE_PATH_MAX];
	http_page page = HTTP_PAGE_COUNT;
	FUZZ_CHECK(strlen(req->file) + 7 <= HTTP_TARGET_MAX);
	strcpy(target, "/audit/");
	strcat(target, req->file);
	FUZZ_CHECK(http_route_of(target, again, &page) == req->route);
	FUZZ_CHECK(page == HTTP_PAGE_COUNT);
	FUZZ_CHECK(strcmp(again, req->file) == 0);
	for (const char *c = req->file; c; c = strchr(c, '/')) {
		if (*c == '/')
			c++;
		FUZZ_CHECK(*c != '\0' && *c != '/' && *c != '.');
	}
}

static void fuzz_head(const uint8_t *data, size_t size)
{
	if (size < 1)
		return;
	size_t split = data[0];
	data++;
	size--;
	if (size > sizeof head)
		size = sizeof head;
	memcpy(head, data, size);
	size_t scanned = 0, whole = http_head_end(head, size, &scanned);
	if (split > size)
		split = size;
	size_t scanned2 = 0, first = http_head_end(head, split, &scanned2);
	size_t later = first ? first : http_head_end(head, size, &scanned2);
	FUZZ_CHECK(later == whole);
	if (!whole)
		return;
	http_request req;
	int status = http_parse_head(head, whole, &req);
	FUZZ_CHECK(status == 200 || status == 400 || status == 405 || status == 414 ||
	           status == 505);
	if (status != 200)
		return;
	FUZZ_CHECK(req.method == HTTP_GET || req.method == HTTP_HEAD);
	check_file(&req);
}

static void fuzz_url(const uint8_t *data, size_t size)
{
	char url[256];
	if (size >= sizeof url)
		size = sizeof url - 1;
	memcpy(url, data, size);
	url[size] = '\0';
	struct sockaddr_storage addr;
	socklen_t len = 0;
	bool loopback = false;
	if (http_listen_parse(url, &addr, &len, &loopback) == KMS_OK)
		FUZZ_CHECK(len > 0 && len <= sizeof addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % MODES == 0)
		fuzz_head(data + 1, size - 1);
	else
		fuzz_url(data + 1, size - 1);
	return 0;
}
