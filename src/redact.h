/* redact.h -- show a URL without the password it may carry. */
#ifndef PGEVENTD_REDACT_H
#define PGEVENTD_REDACT_H

/*
 * `url` as it may be printed or logged: a password in its userinfo is
 * replaced by "***" ("https://user:***@host/path"), the user name and the
 * rest are kept. A URL libcurl cannot parse is shown with its whole
 * userinfo, user name included, replaced by "***" when it has one. Returns a
 * malloc'd string the caller frees, or NULL when out of memory.
 */
char *redact_url(const char *url);

#endif
