/* sign.c -- webhook signature headers: HMAC-SHA256 in three wire formats. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define MAC_LEN       32 /* SHA-256 */
#define B64_MAC_LEN   44 /* base64 of 32 bytes, padded */
#define HEX_MAC_LEN   64
#define SECRET_RANDOM 24   /* bytes in a generated secret */
#define SECRET_MAX    4096 /* characters; far above any real secret, keeps lengths in int */
#define WHSEC         "whsec_"

static const struct {
	const char *name;
	enum sign_scheme scheme;
} schemes[] = {
	{ "standard", SIGN_STANDARD },
	{ "timestamped_hex", SIGN_TIMESTAMPED_HEX },
	{ "body_hex", SIGN_BODY_HEX },
};

#define NSCHEMES (sizeof(schemes) / sizeof(schemes[0]))

bool sign_scheme_parse(const char *name, enum sign_scheme *out)
{
	for (size_t i = 0; i < NSCHEMES; i++) {
		if (strcmp(name, schemes[i].name) == 0) {
			*out = schemes[i].scheme;
			return true;
		}
	}
	return false;
}

const char *sign_scheme_name(enum sign_scheme s)
{
	for (size_t i = 0; i < NSCHEMES; i++)
		if (schemes[i].scheme == s)
			return schemes[i].name;
	return "unknown";
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

/* One secret of the list: [start, start + len). */
struct secret {
	const char *start;
	size_t len;
};

/*
 * Cut `secrets` into at most `max` secrets (or count them when out is NULL). SIGN_BODY_HEX takes
 * the whole string as one secret. Returns the count, or 0 with err set when a secret is empty
 * (an empty string, or a leading, trailing or doubled space) or absurdly long.
 */
static size_t split_secrets(enum sign_scheme s, const char *secrets, struct secret *out, size_t max,
                            char *err, size_t errlen)
{
	size_t n = 0;
	const char *p = secrets;

	if (!secrets || !*secrets) {
		set_err(err, errlen, "empty secret");
		return 0;
	}
	for (;;) {
		size_t len = s == SIGN_BODY_HEX ? strlen(p) : strcspn(p, " ");

		if (len == 0) {
			set_err(err, errlen,
			        "empty secret (secrets are separated by single spaces)");
			return 0;
		}
		if (len > SECRET_MAX) {
			set_err(err, errlen, "secret too long");
			return 0;
		}
		if (out && n < max)
			out[n] = (struct secret){ p, len };
		n++;
		p += len;
		if (*p == '\0')
			return n;
		p++; /* the space */
	}
}

static bool b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/*
 * Decode standard base64 (padding optional) into key, which holds at least 3 * (len + 3) / 4
 * bytes. EVP_DecodeBlock alone would accept surrounding whitespace and count padding as output.
 */
static bool b64_decode(const char *in, size_t len, unsigned char *key, size_t *keylen)
{
	char buf[SECRET_MAX + 4];
	size_t data = len, pad;
	int n;

	while (data > 0 && in[data - 1] == '=')
		data--;
	if (data == 0 || len - data > 2 || data % 4 == 1)
		return false;
	for (size_t i = 0; i < data; i++)
		if (!b64_char((unsigned char)in[i]))
			return false;
	pad = (4 - data % 4) % 4;
	if (len != data && len != data + pad)
		return false; /* wrong number of '=' */
	memcpy(buf, in, data);
	memset(buf + data, '=', pad);
	n = EVP_DecodeBlock(key, (const unsigned char *)buf, (int)(data + pad));
	OPENSSL_cleanse(buf, data + pad);
	if (n < 0)
		return false;
	*keylen = (size_t)n - pad;
	return *keylen > 0;
}

/*
 * HMAC-SHA256 of the message as `scheme` defines it, keyed with one secret. Fails (err set) only
 * for an undecodable SIGN_STANDARD secret or an OpenSSL error.
 */
static bool mac_one(enum sign_scheme s, const struct secret *sec, const char *msg_id,
                    long long timestamp, const char *body, size_t body_len,
                    unsigned char out[MAC_LEN], char *err, size_t errlen)
{
	unsigned char decoded[SECRET_MAX];
	const unsigned char *key = (const unsigned char *)sec->start;
	size_t keylen = sec->len, outlen = 0;
	char ts[32];
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	bool ok = false;

	if (s == SIGN_STANDARD) {
		const char *b64 = sec->start;
		size_t len = sec->len;

		if (len >= strlen(WHSEC) && memcmp(b64, WHSEC, strlen(WHSEC)) == 0) {
			b64 += strlen(WHSEC);
			len -= strlen(WHSEC);
		}
		if (len == 0) {
			set_err(err, errlen, "empty secret after the whsec_ prefix");
			return false;
		}
		if (!b64_decode(b64, len, decoded, &keylen)) {
			set_err(err, errlen, "secret is not valid base64 (standard scheme)");
			return false;
		}
		key = decoded;
	}
	snprintf(ts, sizeof(ts), "%lld", timestamp);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	if (!ctx || !EVP_MAC_init(ctx, key, keylen, params))
		goto out;
	if (s == SIGN_STANDARD &&
	    (!EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
	     !EVP_MAC_update(ctx, (const unsigned char *)".", 1)))
		goto out;
	if (s != SIGN_BODY_HEX && (!EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
	                           !EVP_MAC_update(ctx, (const unsigned char *)".", 1)))
		goto out;
	if (!EVP_MAC_update(ctx, (const unsigned char *)body, body_len) ||
	    !EVP_MAC_final(ctx, out, &outlen, MAC_LEN) || outlen != MAC_LEN)
		goto out;
	ok = true;
out:
	if (!ok)
		set_err(err, errlen, "HMAC-SHA256 failed in OpenSSL");
	if (key == decoded)
		OPENSSL_cleanse(decoded, keylen);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok;
}

static void hex_encode(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* The per-secret part of the header: "v1,<b64>" (standard) or the bare hex (the others). */
static void mac_text(enum sign_scheme s, const unsigned char mac[MAC_LEN], char *out)
{
	if (s == SIGN_STANDARD) {
		memcpy(out, "v1,", 3);
		EVP_EncodeBlock((unsigned char *)out + 3, mac, MAC_LEN);
	} else {
		hex_encode(mac, MAC_LEN, out);
	}
}

#define MAC_TEXT_MAX (HEX_MAC_LEN + 1) /* >= "v1," + B64_MAC_LEN + 1 too */

char *sign_header_value(enum sign_scheme s, const char *secrets, const char *msg_id,
                        long long timestamp, const char *body, size_t body_len, char *err,
                        size_t errlen)
{
	size_t n, used = 0, cap;
	struct secret *list = NULL;
	char *value = NULL, text[MAC_TEXT_MAX];
	unsigned char mac[MAC_LEN];

	if ((size_t)s >= NSCHEMES) {
		set_err(err, errlen, "unknown signature scheme");
		return NULL;
	}
	n = split_secrets(s, secrets, NULL, 0, err, errlen);
	if (n == 0)
		return NULL;
	if (s == SIGN_STANDARD && !msg_id) {
		set_err(err, errlen, "the standard scheme needs a message id");
		return NULL;
	}
	if (!body && body_len > 0) {
		set_err(err, errlen, "no body");
		return NULL;
	}
	list = calloc(n, sizeof(*list));
	cap = 32 + n * (MAC_TEXT_MAX + 4);
	value = malloc(cap);
	if (!list || !value) {
		set_err(err, errlen, "out of memory");
		goto fail;
	}
	split_secrets(s, secrets, list, n, NULL, 0);
	if (s == SIGN_TIMESTAMPED_HEX)
		used = (size_t)snprintf(value, cap, "t=%lld", timestamp);
	else if (s == SIGN_BODY_HEX)
		used = (size_t)snprintf(value, cap, "sha256=");
	for (size_t i = 0; i < n; i++) {
		if (!mac_one(s, &list[i], msg_id, timestamp, body ? body : "", body_len, mac, err,
		             errlen))
			goto fail;
		mac_text(s, mac, text);
		if (s == SIGN_STANDARD)
			used +=
			    (size_t)snprintf(value + used, cap - used, "%s%s", i ? " " : "", text);
		else if (s == SIGN_TIMESTAMPED_HEX)
			used += (size_t)snprintf(value + used, cap - used, ",v1=%s", text);
		else
			used += (size_t)snprintf(value + used, cap - used, "%s", text);
	}
	free(list);
	return value;
fail:
	free(list);
	free(value);
	return NULL;
}

char *sign_generate_secret(enum sign_scheme s)
{
	unsigned char raw[SECRET_RANDOM];
	/* "whsec_" + 32 base64 chars + NUL; the hex form needs 49 */
	char *out = malloc(2 * SECRET_RANDOM + 1);

	if (!out)
		return NULL;
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		free(out);
		return NULL;
	}
	if (s == SIGN_STANDARD) {
		memcpy(out, WHSEC, strlen(WHSEC));
		EVP_EncodeBlock((unsigned char *)out + strlen(WHSEC), raw, sizeof(raw));
	} else {
		hex_encode(raw, sizeof(raw), out);
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	return out;
}

/* Constant-time for equal lengths; the length of a signature is no secret. */
static bool same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

/* Does one signature candidate from the header match the expected text of any secret? */
static bool matches_any(const char *cand, size_t len, char (*expected)[MAC_TEXT_MAX], size_t n)
{
	bool hit = false;

	for (size_t i = 0; i < n; i++)
		hit |= same(cand, len, expected[i], strlen(expected[i]));
	return hit;
}

/*
 * The header grammars: standard is space-separated "v1,<b64>" (other versions ignored);
 * timestamped_hex is comma-separated "t=<ts>" (exactly once) and "v1=<hex>" in any order, other
 * keys ignored; body_hex is the whole "sha256=<hex>".
 */
bool sign_verify(enum sign_scheme s, const char *secrets, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, const char *header_value)
{
	size_t n = split_secrets(s, secrets, NULL, 0, NULL, 0);
	struct secret *list = NULL;
	char(*expected)[MAC_TEXT_MAX] = NULL;
	unsigned char mac[MAC_LEN];
	bool ok = false;

	if (n == 0 || (size_t)s >= NSCHEMES || !header_value || (s == SIGN_STANDARD && !msg_id) ||
	    (!body && body_len))
		return false;
	list = calloc(n, sizeof(*list));
	expected = calloc(n, sizeof(*expected));
	if (!list || !expected)
		goto out;
	split_secrets(s, secrets, list, n, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		if (!mac_one(s, &list[i], msg_id, timestamp, body ? body : "", body_len, mac, NULL,
		             0))
			goto out;
		mac_text(s, mac, expected[i]);
	}
	if (s == SIGN_STANDARD) {
		for (const char *p = header_value; *p;) {
			size_t len = strcspn(p, " ");

			ok |= matches_any(p, len, expected, n);
			p += len;
			p += *p == ' ';
		}
	} else if (s == SIGN_TIMESTAMPED_HEX) {
		char ts[32];
		int nts = 0;
		bool ts_ok = false, sig_ok = false;

		snprintf(ts, sizeof(ts), "t=%lld", timestamp);
		for (const char *p = header_value; *p;) {
			size_t len = strcspn(p, ",");

			if (len >= 2 && memcmp(p, "t=", 2) == 0) {
				nts++;
				ts_ok = len == strlen(ts) && memcmp(p, ts, len) == 0;
			} else if (len >= 3 && memcmp(p, "v1=", 3) == 0) {
				sig_ok |= matches_any(p + 3, len - 3, expected, n);
			}
			p += len;
			p += *p == ',';
		}
		ok = nts == 1 && ts_ok && sig_ok;
	} else {
		const size_t plen = strlen("sha256=");

		ok = strncmp(header_value, "sha256=", plen) == 0 &&
		     matches_any(header_value + plen, strlen(header_value + plen), expected, n);
	}
out:
	free(list);
	free(expected);
	return ok;
}
