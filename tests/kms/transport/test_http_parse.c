/*
 * test_http_parse: which route a request names (kms/transport/http_parse.h),
 * without a kmsd: the published tlog-tiles paths, the auditor page's three
 * files (docs/auditor-page.md) and nothing near them, and the rules every
 * route keeps (GET or HEAD, the target's bytes). The same parser under
 * hostile bytes: fuzz_http; over a real socket: tests/kms/e2e/test_http.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kms/transport/http_parse.h"
#include "tests/support/group.h"

typedef struct route_case {
	const char *target;
	http_route route;
	http_page page;   /* for HTTP_ROUTE_PAGE */
	const char *file; /* for the checkpoint and tile routes */
} route_case;

static const route_case routes[] = {
	{ "/healthz", HTTP_ROUTE_HEALTHZ, 0, "" },
	{ "/metrics", HTTP_ROUTE_METRICS, 0, "" },
	{ "/audit/checkpoint", HTTP_ROUTE_CHECKPOINT, 0, "checkpoint" },
	{ "/audit/tile/0/000", HTTP_ROUTE_TILE_FULL, 0, "tile/0/000" },
	{ "/audit/tile/entries/x001/234.p/17", HTTP_ROUTE_TILE_PARTIAL, 0, "tile/entries/x001/234.p/17" },
	{ "/audit/", HTTP_ROUTE_PAGE, HTTP_PAGE_INDEX, "" },
	{ "/audit/auditor.js", HTTP_ROUTE_PAGE, HTTP_PAGE_JS, "" },
	{ "/audit/auditor.css", HTTP_ROUTE_PAGE, HTTP_PAGE_CSS, "" },
	/* Near the page's names: nothing. */
	{ "/audit", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit//", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/index.html", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/auditor", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/auditor.js/", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/auditor.jsx", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/auditor.js.map", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/Auditor.js", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/AUDITOR.CSS", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/auditor.cs", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/./auditor.js", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/tile/auditor.js", HTTP_ROUTE_NONE, 0, "" },
	{ "/audit/favicon.ico", HTTP_ROUTE_NONE, 0, "" },
	{ "/auditor.js", HTTP_ROUTE_NONE, 0, "" },
	{ "/auditor.css", HTTP_ROUTE_NONE, 0, "" },
	{ "/", HTTP_ROUTE_NONE, 0, "" },
	{ "/index.html", HTTP_ROUTE_NONE, 0, "" },
};

static void routes_are_a_fixed_list(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		char file[TLOG_TILE_PATH_MAX];
		http_page page = HTTP_PAGE_COUNT;
		http_route route = http_route_of(routes[i].target, file, &page);
		if (route != routes[i].route)
			fail_msg("%s: route %d, wanted %d", routes[i].target, route, routes[i].route);
		assert_string_equal(file, routes[i].file);
		if (route == HTTP_ROUTE_PAGE)
			assert_int_equal(page, routes[i].page);
		else
			assert_int_equal(page, HTTP_PAGE_COUNT); /* left alone */
	}
}

typedef struct head_case {
	const char *line; /* the request line; a Host header and the blank line follow */
	int status;
	http_route route;
} head_case;

static const head_case heads[] = {
	{ "GET /audit/ HTTP/1.1", 200, HTTP_ROUTE_PAGE },
	{ "HEAD /audit/auditor.js HTTP/1.0", 200, HTTP_ROUTE_PAGE },
	{ "GET /audit/auditor.css HTTP/1.1", 200, HTTP_ROUTE_PAGE },
	/* Every rule still holds for the page. */
	{ "POST /audit/ HTTP/1.1", 405, HTTP_ROUTE_NONE },
	{ "PUT /audit/auditor.js HTTP/1.1", 405, HTTP_ROUTE_NONE },
	{ "OPTIONS /audit/ HTTP/1.1", 405, HTTP_ROUTE_NONE },
	{ "GET /audit/?x=1 HTTP/1.1", 400, HTTP_ROUTE_NONE },
	{ "GET /audit/#top HTTP/1.1", 400, HTTP_ROUTE_NONE },
	{ "GET /audit/auditor%2ejs HTTP/1.1", 400, HTTP_ROUTE_NONE },
	{ "GET /audit/auditor.js?v=2 HTTP/1.1", 400, HTTP_ROUTE_NONE },
	{ "GET http://127.0.0.1/audit/ HTTP/1.1", 400, HTTP_ROUTE_NONE },
	{ "GET /audit/ HTTP/2.0", 505, HTTP_ROUTE_NONE },
	{ "GET /audit/index.html HTTP/1.1", 200, HTTP_ROUTE_NONE },
};

static void page_keeps_every_rule(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
		char head[256];
		int n = snprintf(head, sizeof head, "%s\r\nHost: 127.0.0.1\r\n\r\n", heads[i].line);
		assert_true(n > 0 && (size_t)n < sizeof head);
		http_request req;
		int status = http_parse_head(head, (size_t)n, &req);
		if (status != heads[i].status)
			fail_msg("%s: %d, wanted %d", heads[i].line, status, heads[i].status);
		if (status == 200)
			assert_int_equal(req.route, heads[i].route);
	}
}

static void page_method_is_kept(void **state)
{
	(void)state;
	static const char head[] = "HEAD /audit/auditor.css HTTP/1.1\r\n\r\n";
	http_request req;
	assert_int_equal(http_parse_head(head, sizeof head - 1, &req), 200);
	assert_int_equal(req.method, HTTP_HEAD);
	assert_int_equal(req.route, HTTP_ROUTE_PAGE);
	assert_int_equal(req.page, HTTP_PAGE_CSS);
	assert_string_equal(req.file, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(routes_are_a_fixed_list),
		cmocka_unit_test(page_keeps_every_rule),
		cmocka_unit_test(page_method_is_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
