/*
 * conf_text.c -- the configuration file as text: read safely (a regular
 * file only, never blocking on a FIFO), and lexed for what libconfig does
 * not keep (integers as written, brackets left open).
 *
 * libconfig 1.5 reads an integer without an L suffix into an int and
 * wraps it (4294967297 becomes 1), so range checks on its value can be
 * fooled. conf_scan_file() therefore walks the text itself, recording each
 * integer literal under the path of the key it belongs to, and the
 * brackets still open at the end of the file (for a syntax error there).
 * It is a lexer, not a parser (libconfig still decides what is valid).
 * Where it cannot follow the text (an @include, an unterminated comment)
 * it sets scan.lost: then no bracket hint is given, and a key whose
 * literal it did not record falls back to libconfig's value.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "conf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The path a value of `name` has at the current depth ("" inside a list). */
static void scan_child_path(const struct scan *sc, const char *name, char *out, size_t len)
{
	const struct scan_frame *top = sc->depth ? &sc->stack[sc->depth - 1] : NULL;

	if (top && top->open != '{')
		snprintf(out, len, "%s", ""); /* a group inside a list: not a key */
	else if (top && top->path[0])
		snprintf(out, len, "%s.%s", top->path, name);
	else if (top)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%s", name);
}

/* A scalar value: an integer one is recorded under its key or list. */
static void scan_value(struct scan *sc, const char *name, const char *text, size_t len,
                       bool integer)
{
	struct scan_frame *top = sc->depth ? &sc->stack[sc->depth - 1] : NULL;
	struct literal lit = { .elem = -1, .text = text, .len = len };

	if (top && top->open != '{') {
		lit.elem = top->elem++;
		snprintf(lit.path, sizeof(lit.path), "%s", top->path);
	} else if (name[0]) {
		scan_child_path(sc, name, lit.path, sizeof(lit.path));
	}
	if (!integer || !lit.path[0])
		return;
	if (sc->n == sc->cap) {
		int cap = sc->cap ? sc->cap * 2 : 32;
		struct literal *l = realloc(sc->lits, sizeof(*l) * (size_t)cap);

		if (!l) {
			sc->lost = true;
			return;
		}
		sc->lits = l;
		sc->cap = cap;
	}
	sc->lits[sc->n++] = lit;
}

/* Whether text[0..len) is written as an integer: [+-]digits or 0xhex, then L or LL. */
static bool looks_integer(const char *t, size_t len)
{
	size_t i = 0, digits = 0;
	bool hex = len > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X');

	if (hex)
		i = 2;
	else if (len && (t[0] == '+' || t[0] == '-'))
		i = 1;
	for (; i < len; i++, digits++)
		if (!(t[i] >= '0' && t[i] <= '9') &&
		    !(hex && ((t[i] >= 'a' && t[i] <= 'f') || (t[i] >= 'A' && t[i] <= 'F'))))
			break;
	if (i < len && t[i] == 'L')
		i++;
	if (i < len && t[i] == 'L')
		i++;
	return digits > 0 && i == len;
}

void conf_scan_file(struct scan *sc, const char *text)
{
	const char *p = text;
	char name[64] = "";
	int line = 1;

	while (*p) {
		char c = *p;

		if (c == '\n') {
			line++;
			p++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
			p++;
		} else if (c == '#' || (c == '/' && p[1] == '/') || c == '@') {
			/* a comment, or a directive such as @include: to the end of the line */
			if (c == '@')
				sc->lost = true; /* an included file's text is not scanned */
			while (*p && *p != '\n')
				p++;
		} else if (c == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");

			if (!end) {
				sc->lost = true;
				return;
			}
			for (; p < end; p++)
				line += *p == '\n';
			p = end + 2;
		} else if (c == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				line += *p == '\n';
			}
			if (!*p) {
				sc->lost = true;
				return;
			}
			p++;
			scan_value(sc, name, NULL, 0, false);
			name[0] = '\0';
		} else if (c == '=' || c == ':') {
			p++;
		} else if (c == ';' || c == ',') {
			name[0] = '\0';
			p++;
		} else if (c == '{' || c == '[' || c == '(') {
			struct scan_frame *f;

			if (sc->depth == SCAN_DEPTH) {
				sc->lost = true;
				return;
			}
			f = &sc->stack[sc->depth];
			f->open = c;
			f->line = line;
			f->elem = 0;
			if (sc->depth && sc->stack[sc->depth - 1].open != '{') {
				/* an element of a list: a group inside it is no key */
				sc->stack[sc->depth - 1].elem++;
				f->path[0] = '\0';
			} else {
				scan_child_path(sc, name, f->path, sizeof(f->path));
			}
			sc->depth++;
			name[0] = '\0';
			p++;
		} else if (c == '}' || c == ']' || c == ')') {
			char want = c == '}' ? '{' : c == ']' ? '[' : '(';

			if (!sc->depth || sc->stack[sc->depth - 1].open != want) {
				sc->lost = true;
				return;
			}
			sc->depth--;
			name[0] = '\0';
			p++;
		} else if (is_name_start(c) && !name[0]) {
			const char *start = p;

			while (is_name_char(*p))
				p++;
			/* true/false after "name =" are values, not names */
			if ((p - start == 4 && strncasecmp(start, "true", 4) == 0) ||
			    (p - start == 5 && strncasecmp(start, "false", 5) == 0))
				scan_value(sc, "", NULL, 0, false);
			else
				snprintf(name, sizeof(name), "%.*s", (int)(p - start), start);
		} else {
			/* a number, or a boolean after a name */
			const char *start = p;

			while (*p && (is_name_char(*p) || *p == '.' || *p == '+'))
				p++;
			if (p == start) {
				sc->lost = true; /* a character libconfig rejects */
				return;
			}
			scan_value(sc, name, start, (size_t)(p - start),
			           looks_integer(start, (size_t)(p - start)));
			name[0] = '\0';
		}
	}
}

const struct literal *conf_find_literal(const struct scan *sc, const char *path, int elem)
{
	if (!sc)
		return NULL;
	for (int i = 0; i < sc->n; i++)
		if (sc->lits[i].elem == elem && strcmp(sc->lits[i].path, path) == 0)
			return &sc->lits[i];
	return NULL;
}

/* The value of an integer literal as written; false when it does not fit in 64 bits. */
bool conf_literal_value(const struct literal *lit, long long *v)
{
	char buf[64], *end;
	size_t len = lit->len;

	while (len && lit->text[len - 1] == 'L')
		len--;
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, lit->text, len);
	buf[len] = '\0';
	errno = 0;
	if (len > 2 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) {
		unsigned long long u = strtoull(buf, &end, 16);

		if (errno || *end || u > (unsigned long long)LLONG_MAX)
			return false;
		*v = (long long)u;
		return true;
	}
	*v = strtoll(buf, &end, 10);
	return !errno && !*end;
}

void conf_scan_release(struct scan *sc)
{
	free(sc->lits);
	memset(sc, 0, sizeof(*sc));
}

/* What a file that is not a regular one is, for the message. */
static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a regular file";
}

/* A configuration file larger than this is a mistake, not a configuration. */
#define CONF_MAX_BYTES (1 << 20)

/*
 * The whole file as a string (malloc'd), or NULL with "FILE: why" in err.
 * Only a regular file is read: it is stat'ed before it is opened, and
 * opened O_NONBLOCK then fstat'ed, so a FIFO or a device put in its place
 * is refused without blocking or reading from it.
 */
char *conf_read_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *text = NULL;
	size_t n = 0;
	int fd = -1;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
		goto not_regular;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode))
		goto not_regular;
	text = malloc(CONF_MAX_BYTES + 1);
	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	for (;;) {
		ssize_t r = read(fd, text + n, CONF_MAX_BYTES + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot read the file: %s", path,
			         strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONF_MAX_BYTES) {
			snprintf(err, errlen, "%s: cannot read the file: larger than %d bytes",
			         path, CONF_MAX_BYTES);
			goto fail;
		}
	}
	if (memchr(text, '\0', n)) {
		snprintf(err, errlen, "%s: cannot read the file: it holds a NUL byte, not text",
		         path);
		goto fail;
	}
	text[n] = '\0';
	close(fd);
	return text;
not_regular:
	snprintf(err, errlen, "%s: cannot read the file: it is %s, not a regular file", path,
	         file_kind(st.st_mode));
fail:
	if (fd >= 0)
		close(fd);
	free(text);
	return NULL;
}

/* libconfig's parse error, said once, with where a bracket left open at
 * the end of the file was opened when the scan can tell. */
void conf_syntax_error(const config_t *lc, const struct scan *sc, const char *path, char *err,
                       size_t errlen)
{
	const char *what = config_error_text(lc);
	int n = snprintf(err, errlen, "%s:%d: %s", path, config_error_line(lc),
	                 what && *what ? what : "syntax error");

	if (n < 0 || (size_t)n >= errlen || sc->lost || sc->depth == 0)
		return;
	const struct scan_frame *f = &sc->stack[sc->depth - 1];

	snprintf(err + n, errlen - (size_t)n, ": unclosed '%c'%s%s%s opened at line %d", f->open,
	         f->path[0] ? " of \"" : "", f->path, f->path[0] ? "\"" : "", f->line);
}
