/* check_sign.c -- webhook signatures: the known-answer vectors, rotation, secrets, verification. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "src/sign.h"
#include "tests/check_unit.h"

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif

/* Also declared in tests/check_unit.h once the runner lists this suite; harmless twice. */
Suite *sign_suite(void);

#define ERRLEN 256

/* The vectors of one section of tests/vectors/signatures.json (a new reference; decref it). */
static json_t *vectors(const char *section)
{
	const char *dir = getenv("PGEVENTD_SRCDIR");
	char path[4096];
	json_error_t e;
	json_t *all, *v;

	snprintf(path, sizeof(path), "%s/tests/vectors/signatures.json", dir ? dir : TOP_SRCDIR);
	all = json_load_file(path, 0, &e);
	ck_assert_msg(all != NULL, "%s: %s", path, e.text);
	v = json_object_get(json_object_get(all, section), "vectors");
	ck_assert_msg(json_is_array(v) && json_array_size(v) > 0, "%s: no %s vectors", path,
	              section);
	json_incref(v);
	json_decref(all);
	return v;
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	ck_assert_msg(s != NULL, "vector without \"%s\"", key);
	return s;
}

/* Sign and expect success; the caller frees the value. */
static char *sign_ok(enum sign_scheme s, const char *secrets, const char *id, long long ts,
                     const char *body)
{
	char err[ERRLEN] = "";
	char *v = sign_header_value(s, secrets, id, ts, body, strlen(body), err, sizeof(err));

	ck_assert_msg(v != NULL, "%s: %s", secrets, err);
	return v;
}

static void check_section(const char *section, enum sign_scheme s, const char *expected_key)
{
	json_t *vs = vectors(section), *v;
	size_t i;

	json_array_foreach(vs, i, v)
	{
		const char *secret = str(v, "secret"), *body = str(v, "body");
		const char *id = s == SIGN_STANDARD ? str(v, "id") : NULL;
		long long ts = json_integer_value(json_object_get(v, "timestamp"));
		char *got = sign_ok(s, secret, id, ts, body);

		ck_assert_msg(strcmp(got, str(v, expected_key)) == 0, "%s vector %zu: %s != %s",
		              section, i, got, str(v, expected_key));
		ck_assert(sign_verify(s, secret, id, ts, body, strlen(body), got));
		free(got);
	}
	json_decref(vs);
}

START_TEST(test_sign_standard_reproduces_every_vector)
{
	check_section("standard_webhooks", SIGN_STANDARD, "signature");
}
END_TEST

START_TEST(test_sign_timestamped_hex_reproduces_every_vector)
{
	check_section("timestamped_hex", SIGN_TIMESTAMPED_HEX, "header");
}
END_TEST

START_TEST(test_sign_body_hex_reproduces_every_vector)
{
	/* includes "It's a Secret to Everybody": the whole string is the one secret */
	check_section("body_hex", SIGN_BODY_HEX, "header");
}
END_TEST

#define S1   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define S2   "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
#define ID   "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS   1614265330LL
#define BODY "{\"test\": 2432232314}"

START_TEST(test_sign_standard_rotation_signs_with_every_secret)
{
	char *both = sign_ok(SIGN_STANDARD, S1 " " S2, ID, TS, BODY);
	char *one = sign_ok(SIGN_STANDARD, S1, ID, TS, BODY);
	char *two = sign_ok(SIGN_STANDARD, S2, ID, TS, BODY);
	char expect[256];

	/* the first is the known-answer vector 1 */
	ck_assert_str_eq(one, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
	snprintf(expect, sizeof(expect), "%s %s", one, two);
	ck_assert_str_eq(both, expect);
	ck_assert(sign_verify(SIGN_STANDARD, S1, ID, TS, BODY, strlen(BODY), both));
	ck_assert(sign_verify(SIGN_STANDARD, S2, ID, TS, BODY, strlen(BODY), both));
	ck_assert(sign_verify(SIGN_STANDARD, S2 " " S1, ID, TS, BODY, strlen(BODY), one));
	ck_assert(!sign_verify(SIGN_STANDARD, "whsec_dGhpcmQgc2VjcmV0", ID, TS, BODY, strlen(BODY),
	                       both));
	free(both);
	free(one);
	free(two);
}
END_TEST

START_TEST(test_sign_timestamped_hex_rotation_adds_one_v1_per_secret)
{
	char *both = sign_ok(SIGN_TIMESTAMPED_HEX, "secret other", NULL, 1636936200, "hello !");
	char *other = sign_ok(SIGN_TIMESTAMPED_HEX, "other", NULL, 1636936200, "hello !");
	const char *prefix = "t=1636936200,v1=";
	char expect[256];

	ck_assert_int_eq(strncmp(other, prefix, strlen(prefix)), 0);
	/* the first v1= is the known-answer vector's */
	snprintf(expect, sizeof(expect),
	         "%s1b3d69df55f1e52f05224ba94a5162abeb17ef52cd7f4948c390f810d6a87e98,v1=%s", prefix,
	         other + strlen(prefix));
	ck_assert_str_eq(both, expect);
	ck_assert(
	    sign_verify(SIGN_TIMESTAMPED_HEX, "secret", NULL, 1636936200, "hello !", 7, both));
	ck_assert(sign_verify(SIGN_TIMESTAMPED_HEX, "other", NULL, 1636936200, "hello !", 7, both));
	ck_assert(
	    !sign_verify(SIGN_TIMESTAMPED_HEX, "third", NULL, 1636936200, "hello !", 7, both));
	free(both);
	free(other);
}
END_TEST

START_TEST(test_sign_body_hex_takes_the_whole_string_as_one_secret)
{
	char *v = sign_ok(SIGN_BODY_HEX, "mysecret other", NULL, 0, "{\"foo\":\"bar\"}");
	char *first = sign_ok(SIGN_BODY_HEX, "mysecret", NULL, 0, "{\"foo\":\"bar\"}");

	/* one value, never a list, and not the first word's signature */
	ck_assert_int_eq(strlen(v), strlen("sha256=") + 64);
	ck_assert_str_ne(v, first);
	ck_assert(
	    sign_verify(SIGN_BODY_HEX, "mysecret other", NULL, 0, "{\"foo\":\"bar\"}", 13, v));
	ck_assert(!sign_verify(SIGN_BODY_HEX, "mysecret", NULL, 0, "{\"foo\":\"bar\"}", 13, v));
	free(v);
	free(first);
}
END_TEST

START_TEST(test_sign_standard_secret_padding_is_optional)
{
	/* 32 bytes of key: 43 base64 characters plus one '=' */
	const char *padded = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
	const char *bare = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
	char *a = sign_ok(SIGN_STANDARD, padded, ID, TS, BODY);
	char *b = sign_ok(SIGN_STANDARD, bare, ID, TS, BODY);

	ck_assert_str_eq(a, b);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_sign_rejects_unusable_secrets_with_a_message)
{
	static const struct {
		enum sign_scheme scheme;
		const char *secrets;
	} bad[] = {
		{ SIGN_STANDARD, "" },
		{ SIGN_STANDARD, "whsec_" },
		{ SIGN_STANDARD, "whsec_not*base64!" },
		{ SIGN_STANDARD, "whsec_A" },        /* 6 bits: not a byte */
		{ SIGN_STANDARD, "whsec_QUJD===" },  /* too much padding */
		{ SIGN_STANDARD, "whsec_QU=JD" },    /* padding inside */
		{ SIGN_STANDARD, "whsec_QUJDQQ\n" }, /* whitespace EVP_DecodeBlock would skip */
		{ SIGN_STANDARD, S1 "  " S2 },       /* doubled space: an empty secret */
		{ SIGN_STANDARD, " " S1 },
		{ SIGN_STANDARD, S1 " " },
		{ SIGN_STANDARD, S1 " whsec_%%%%" }, /* one bad secret spoils the list */
		{ SIGN_TIMESTAMPED_HEX, "" },
		{ SIGN_TIMESTAMPED_HEX, "a  b" },
		{ SIGN_TIMESTAMPED_HEX, "a " },
		{ SIGN_BODY_HEX, "" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[ERRLEN] = "";
		char *v = sign_header_value(bad[i].scheme, bad[i].secrets, ID, TS, BODY,
		                            strlen(BODY), err, sizeof(err));

		ck_assert_msg(v == NULL, "accepted \"%s\"", bad[i].secrets);
		ck_assert_msg(err[0] != '\0', "no message for \"%s\"", bad[i].secrets);
		ck_assert_msg(!sign_verify(bad[i].scheme, bad[i].secrets, ID, TS, BODY,
		                           strlen(BODY), "v1,AAAA"),
		              "verified with \"%s\"", bad[i].secrets);
	}
}
END_TEST

START_TEST(test_sign_error_never_shows_the_secret)
{
	char err[ERRLEN] = "";

	ck_assert_ptr_null(sign_header_value(SIGN_STANDARD, "whsec_Sup3rS3cret!", ID, TS, BODY,
	                                     strlen(BODY), err, sizeof(err)));
	ck_assert_msg(!strstr(err, "Sup3r"), "%s", err);
	ck_assert_msg(strstr(err, "base64"), "%s", err);
}
END_TEST

START_TEST(test_sign_standard_needs_a_message_id)
{
	char err[ERRLEN] = "", *a, *b;

	ck_assert_ptr_null(
	    sign_header_value(SIGN_STANDARD, S1, NULL, TS, BODY, strlen(BODY), err, sizeof(err)));
	ck_assert_str_ne(err, "");
	/* the hex schemes do not sign it */
	a = sign_ok(SIGN_TIMESTAMPED_HEX, "k", NULL, TS, BODY);
	b = sign_ok(SIGN_TIMESTAMPED_HEX, "k", "anything", TS, BODY);

	ck_assert_str_eq(a, b);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_sign_error_buffer_may_be_absent)
{
	ck_assert_ptr_null(sign_header_value(SIGN_STANDARD, "", ID, TS, BODY, 4, NULL, 0));
}
END_TEST

START_TEST(test_sign_generated_standard_secret_is_whsec_and_24_bytes)
{
	char *a = sign_generate_secret(SIGN_STANDARD), *b = sign_generate_secret(SIGN_STANDARD);
	char *v;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(strncmp(a, "whsec_", 6), 0);
	ck_assert_int_eq(strlen(a), 6 + 32); /* 24 bytes, no padding */
	ck_assert_str_ne(a, b);
	v = sign_ok(SIGN_STANDARD, a, ID, TS, BODY);
	ck_assert(sign_verify(SIGN_STANDARD, a, ID, TS, BODY, strlen(BODY), v));
	ck_assert(!sign_verify(SIGN_STANDARD, b, ID, TS, BODY, strlen(BODY), v));
	free(v);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_sign_generated_hex_secret_is_48_hex_chars)
{
	enum sign_scheme schemes[] = { SIGN_TIMESTAMPED_HEX, SIGN_BODY_HEX };

	for (size_t k = 0; k < 2; k++) {
		char *a = sign_generate_secret(schemes[k]), *b = sign_generate_secret(schemes[k]);

		ck_assert_ptr_nonnull(a);
		ck_assert_ptr_nonnull(b);
		ck_assert_int_eq(strlen(a), 48);
		ck_assert_int_eq(strspn(a, "0123456789abcdef"), 48);
		ck_assert_str_ne(a, b);
		free(a);
		free(b);
	}
}
END_TEST

/* Flip one bit of a copy of s at i. */
static char *flip(const char *s, size_t i)
{
	char *c = strdup(s);

	c[i] ^= 0x01;
	return c;
}

START_TEST(test_sign_verify_rejects_any_flipped_byte)
{
	static const struct {
		enum sign_scheme scheme;
		const char *secret;
	} cases[] = {
		{ SIGN_STANDARD, S1 },
		{ SIGN_TIMESTAMPED_HEX, "secret" },
		{ SIGN_BODY_HEX, "It's a Secret to Everybody" },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		enum sign_scheme s = cases[k].scheme;
		const char *sec = cases[k].secret;
		size_t blen = strlen(BODY);
		char *v = sign_ok(s, sec, ID, TS, BODY);

		ck_assert(sign_verify(s, sec, ID, TS, BODY, blen, v));
		for (size_t i = 0; i < blen; i++) {
			char *b = flip(BODY, i);

			ck_assert_msg(!sign_verify(s, sec, ID, TS, b, blen, v), "%s: body byte %zu",
			              sign_scheme_name(s), i);
			free(b);
		}
		for (size_t i = 0; v[i]; i++) {
			char *h = flip(v, i);

			ck_assert_msg(!sign_verify(s, sec, ID, TS, BODY, blen, h),
			              "%s: header byte %zu of %s", sign_scheme_name(s), i, v);
			free(h);
		}
		ck_assert(!sign_verify(s, sec, ID, TS, BODY, blen - 1, v)); /* truncated body */
		if (s != SIGN_BODY_HEX)
			ck_assert(!sign_verify(s, sec, ID, TS + 1, BODY, blen, v));
		if (s == SIGN_STANDARD)
			ck_assert(!sign_verify(s, sec, "msg_other", TS, BODY, blen, v));
		free(v);
	}
}
END_TEST

START_TEST(test_sign_verify_reads_each_header_grammar)
{
	char *std = sign_ok(SIGN_STANDARD, S1, ID, TS, BODY);
	char *hex = sign_ok(SIGN_TIMESTAMPED_HEX, "secret", NULL, 1636936200, "hello !");
	char hdr[512];

	/* standard: unknown versions and other signatures around it are skipped */
	snprintf(hdr, sizeof(hdr), "v2,AAAA v1,bm90IGl0 %s", std);
	ck_assert(sign_verify(SIGN_STANDARD, S1, ID, TS, BODY, strlen(BODY), hdr));
	ck_assert(!sign_verify(SIGN_STANDARD, S1, ID, TS, BODY, strlen(BODY), "v1,bm90IGl0"));
	ck_assert(!sign_verify(SIGN_STANDARD, S1, ID, TS, BODY, strlen(BODY), ""));
	ck_assert(!sign_verify(SIGN_STANDARD, S1, ID, TS, BODY, strlen(BODY), NULL));
	/* timestamped_hex: any order, unknown keys skipped, exactly one t= */
	snprintf(hdr, sizeof(hdr), "v0=abc,%s,%s", hex + 13, "t=1636936200");
	ck_assert_msg(
	    sign_verify(SIGN_TIMESTAMPED_HEX, "secret", NULL, 1636936200, "hello !", 7, hdr), "%s",
	    hdr);
	snprintf(hdr, sizeof(hdr), "%s,t=1636936200", hex);
	ck_assert(
	    !sign_verify(SIGN_TIMESTAMPED_HEX, "secret", NULL, 1636936200, "hello !", 7, hdr));
	ck_assert(!sign_verify(SIGN_TIMESTAMPED_HEX, "secret", NULL, 1636936200, "hello !", 7,
	                       hex + 13)); /* no t= */
	/* body_hex: upper-case hex or a missing prefix is not the signature */
	ck_assert(!sign_verify(SIGN_BODY_HEX, "mysecret", NULL, 0, "{\"foo\":\"bar\"}", 13,
	                       "4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"));
	ck_assert(
	    sign_verify(SIGN_BODY_HEX, "mysecret", NULL, 0, "{\"foo\":\"bar\"}", 13,
	                "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"));
	free(std);
	free(hex);
}
END_TEST

START_TEST(test_sign_empty_body_is_signed)
{
	char err[ERRLEN];
	char *a = sign_header_value(SIGN_BODY_HEX, "k", NULL, 0, NULL, 0, err, sizeof(err));
	char *b = sign_header_value(SIGN_BODY_HEX, "k", NULL, 0, "", 0, err, sizeof(err));

	ck_assert_ptr_nonnull(a);
	ck_assert_str_eq(a, b);
	ck_assert(sign_verify(SIGN_BODY_HEX, "k", NULL, 0, NULL, 0, a));
	free(a);
	free(b);
}
END_TEST

START_TEST(test_sign_scheme_names_round_trip)
{
	enum sign_scheme s;

	for (int i = SIGN_STANDARD; i <= SIGN_BODY_HEX; i++) {
		ck_assert(sign_scheme_parse(sign_scheme_name((enum sign_scheme)i), &s));
		ck_assert_int_eq(s, i);
	}
	ck_assert(sign_scheme_parse("timestamped_hex", &s) && s == SIGN_TIMESTAMPED_HEX);
	ck_assert(!sign_scheme_parse("Standard", &s));
	ck_assert(!sign_scheme_parse("", &s));
}
END_TEST

Suite *sign_suite(void)
{
	Suite *s = suite_create("sign");
	TCase *kat = tcase_create("vectors");
	TCase *tc = tcase_create("behaviour");

	tcase_add_test(kat, test_sign_standard_reproduces_every_vector);
	tcase_add_test(kat, test_sign_timestamped_hex_reproduces_every_vector);
	tcase_add_test(kat, test_sign_body_hex_reproduces_every_vector);
	suite_add_tcase(s, kat);

	tcase_add_test(tc, test_sign_standard_rotation_signs_with_every_secret);
	tcase_add_test(tc, test_sign_timestamped_hex_rotation_adds_one_v1_per_secret);
	tcase_add_test(tc, test_sign_body_hex_takes_the_whole_string_as_one_secret);
	tcase_add_test(tc, test_sign_standard_secret_padding_is_optional);
	tcase_add_test(tc, test_sign_rejects_unusable_secrets_with_a_message);
	tcase_add_test(tc, test_sign_error_never_shows_the_secret);
	tcase_add_test(tc, test_sign_standard_needs_a_message_id);
	tcase_add_test(tc, test_sign_error_buffer_may_be_absent);
	tcase_add_test(tc, test_sign_generated_standard_secret_is_whsec_and_24_bytes);
	tcase_add_test(tc, test_sign_generated_hex_secret_is_48_hex_chars);
	tcase_add_test(tc, test_sign_verify_rejects_any_flipped_byte);
	tcase_add_test(tc, test_sign_verify_reads_each_header_grammar);
	tcase_add_test(tc, test_sign_empty_body_is_signed);
	tcase_add_test(tc, test_sign_scheme_names_round_trip);
	suite_add_tcase(s, tc);
	return s;
}
