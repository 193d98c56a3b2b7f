/*
 * sign.h -- HMAC-SHA256 signatures for outbound webhooks (OpenSSL libcrypto).
 *
 * Three header formats, chosen per subscription:
 *   standard         Standard Webhooks: "v1,<base64>" over "<msg_id>.<ts>.<body>", key =
 *                    base64-decode of the secret ("whsec_" prefix optional). Goes in
 *                    webhook-signature, next to webhook-id and webhook-timestamp.
 *   timestamped_hex  Stripe-like "t=<ts>,v1=<hex>" over "<ts>.<body>", raw secret bytes as key.
 *   body_hex         GitHub-like "sha256=<hex>" over the body only, raw secret bytes as key.
 * Known-answer vectors: tests/vectors/signatures.json. Pure functions, thread-safe.
 */
#ifndef PGEVENTD_SIGN_H
#define PGEVENTD_SIGN_H

#include <stdbool.h>
#include <stddef.h>

enum sign_scheme { SIGN_STANDARD = 0, SIGN_TIMESTAMPED_HEX, SIGN_BODY_HEX };

/* "standard", "timestamped_hex", "body_hex"; false for anything else. */
bool sign_scheme_parse(const char *name, enum sign_scheme *out);
const char *sign_scheme_name(enum sign_scheme s);

/*
 * The value of the signature header, malloc'd (the caller frees it), or NULL with a message in
 * err when a secret is unusable (empty, or not base64 for SIGN_STANDARD) or msg_id is NULL for
 * SIGN_STANDARD; the message never contains the secret.
 *
 * `secrets` is what the subscription stores:
 *   SIGN_STANDARD         one or more secrets separated by single spaces (every active secret
 *                         during a rotation); the value is "v1,<b64> v1,<b64>", one signature
 *                         per secret. Base64 never holds a space, so the split is unambiguous.
 *   SIGN_TIMESTAMPED_HEX  the same list; the value is "t=<ts>,v1=<hex>,v1=<hex>", one v1= per
 *                         secret (as Stripe does). A secret of this scheme cannot contain a
 *                         space: whoever stores one must refuse it.
 *   SIGN_BODY_HEX         exactly ONE secret, the whole string, spaces included (the GitHub
 *                         vector's secret is "It's a Secret to Everybody"); the value is
 *                         "sha256=<hex>". No rotation: the header holds one value that receivers
 *                         compare whole, so a second signature would break every receiver;
 *                         rotating is switching the secret at once.
 * msg_id is ignored by the hex schemes, timestamp by SIGN_BODY_HEX.
 */
char *sign_header_value(enum sign_scheme s, const char *secrets, const char *msg_id,
                        long long timestamp, const char *body, size_t body_len, char *err,
                        size_t errlen);

/*
 * A new secret from 24 bytes of RAND_bytes: "whsec_" + 32 base64 characters for SIGN_STANDARD,
 * 48 lowercase hex characters otherwise. malloc'd; NULL when the generator fails.
 */
char *sign_generate_secret(enum sign_scheme s);

/*
 * Does header_value carry a valid signature for this message under any of `secrets` (same
 * form as above)? Comparisons are constant-time (CRYPTO_memcmp). For
 * SIGN_TIMESTAMPED_HEX the header's t= must equal `timestamp`; checking that the timestamp is
 * recent is the receiver's business. False for unusable secrets or a malformed header.
 */
bool sign_verify(enum sign_scheme s, const char *secrets, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, const char *header_value);

#endif
