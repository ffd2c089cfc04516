/*
 * auditor_page.h: the auditor's web page (docs/auditor-page.md), its three
 * files built into kmsd from kms/transport/auditor/ by cmake/embed.cmake
 * (the generated auditor_page.c), so that kmsd serves it with no file of
 * its own at run time. Indexed by http_page (http_parse.h).
 */
#ifndef KMS_AUDITOR_PAGE_H
#define KMS_AUDITOR_PAGE_H

#include <stddef.h>

typedef struct auditor_file {
	const unsigned char *bytes;
	size_t len;
} auditor_file;

/* index.html, auditor.js, auditor.css, in http_page's order. */
extern const auditor_file auditor_page_files[3];

#endif
