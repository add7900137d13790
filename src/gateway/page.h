/* The status page GET / serves: src/gateway/status.html, compiled in by
 * cmake/embed_page.cmake, so the binary needs no file at run time. */
#ifndef TCPOPS_GW_PAGE_H
#define TCPOPS_GW_PAGE_H

#include <stddef.h>

/* The page's bytes (gw_page_html_len of them, then a NUL). */
extern const char gw_page_html[];
extern const size_t gw_page_html_len;

/* Its Content-Security-Policy: the page's own inline script and style (by
 * their SHA-256, computed at build time) and fetches to this origin only. */
extern const char gw_page_csp[];

#endif
