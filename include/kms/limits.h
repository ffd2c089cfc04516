/*
 * kms/limits.h: the bounds of the wire protocol, for kmsd and its clients.
 *
 * kmsd refuses a request past any of these with KMS_INVALID_ARGUMENT; the
 * client library and the CLIs check the same numbers before sending so a
 * caller learns of a mistake without a round trip. Both sides include this
 * header, so the two can never disagree.
 */
#ifndef KMS_LIMITS_H
#define KMS_LIMITS_H

#include <stddef.h>

/* ---- the data plane ---- */

/* Encrypt's plaintext, in bytes. The ciphertext blob's length field admits
 * no more (docs/ciphertext-format.md); larger data takes a data key. */
#define KMS_ENCRYPT_MIN_PLAINTEXT 1
#define KMS_ENCRYPT_MAX_PLAINTEXT 4096

/* GenerateRandom's output, in bytes: enough for any key or nonce, small
 * enough that one call cannot drain the HSM's entropy for everyone else. */
#define KMS_GENERATE_RANDOM_MAX 1024

/* A data key (GenerateDataKey): AES-256. */
#define KMS_DATA_KEY_LEN 32

/* Items in one batch request: a full batch of maximal plaintexts (4 MB)
 * stays well inside KMS_REQUEST_MAX_DEFAULT. */
#define KMS_BATCH_MAX 1000

/* Sign, Verify, GenerateMac, VerifyMac: a message is 1..4096 bytes (hash a
 * larger one and sign its digest); a digest (MESSAGE_DIGEST) is a SHA-256,
 * 32 bytes. A signature given to Verify is at most 256 bytes (a DER P-256
 * signature is at most 72, Ed25519's 64). A MAC is HMAC-SHA256's 32. */
#define KMS_SIGN_MESSAGE_MAX 4096
#define KMS_SIGN_DIGEST_LEN 32
#define KMS_SIGNATURE_MAX 256
#define KMS_MAC_LEN 32

/* Pseudonymize (docs/pseudonyms.md): 1..10,000 values of 1..1024 bytes in
 * one request (bulk tokenisation; the request's size bound applies too),
 * and the text form's length with its NUL: "kp_" + 8 hex + "_" + up to
 * 10 digits of version + "_" + 32 base32 characters. */
#define KMS_PSEUDONYM_VALUES_MAX 10000
#define KMS_PSEUDONYM_VALUE_MAX 1024
#define KMS_PSEUDONYM_TEXT_SIZE 56

/* ---- the encryption context ----
 * Bound into every blob's authenticated data, so the largest encoding must
 * stay small: 2 + 64 * (2 + 256 + 2 + 1024) bytes. */

/* Pairs in one context. */
#define KMS_CONTEXT_MAX_PAIRS 64
/* A key, in bytes of UTF-8: an empty key names nothing. */
#define KMS_CONTEXT_KEY_MIN 1
#define KMS_CONTEXT_KEY_MAX 256
/* A value, in bytes of UTF-8 (may be empty). */
#define KMS_CONTEXT_VALUE_MAX 1024

/* ---- the envelope ---- */

/* A request id, in characters of [A-Za-z0-9._-]: it is logged, audited and
 * signed, so it is kept to one short token. */
#define KMS_REQUEST_ID_MAX 64

/* Bytes of one packed request kmsd takes unless its config says otherwise
 * ([limits] max_request_bytes): a full batch of maximal items fits. Larger
 * messages are dropped unread by the transport. */
#define KMS_REQUEST_MAX_DEFAULT ((size_t)8 << 20)

/* Bytes of one packed reply a client takes by default, and the most kmsd
 * sends: every reply fits (docs/protocol.md, "The largest reply"). The
 * largest is a full batch of maximal items, about 4.3 MiB (KMS_BATCH_MAX
 * results of a 4185-byte blob, a key id, a version and an item message of
 * up to 255 bytes); a ListKeys page is cut at KMS_LIST_REPLY_BUDGET.
 * test_reply_max packs the worst cases and checks them against this. A
 * nanomsg client must raise its 1 MiB NN_RCVMAXSIZE to this. */
#define KMS_RESPONSE_MAX_DEFAULT (KMS_REQUEST_MAX_DEFAULT + ((size_t)64 << 10))
#define KMS_REPLY_MAX KMS_RESPONSE_MAX_DEFAULT

/* Protobuf fields in one packed request, counting every element of every
 * repeated field in every nested message: a full batch whose items each
 * carry a key, a payload and a full encryption context (3 fields a pair)
 * fits, with room for the envelope. kmsd counts them on the wire before
 * unpacking, because unpacking allocates for each. */
#define KMS_REQUEST_FIELDS_MAX (KMS_BATCH_MAX * (4 + 3 * KMS_CONTEXT_MAX_PAIRS) + 256)

/* ---- the control plane ---- */

/* A key's description, in bytes of UTF-8: a label for humans, stored with
 * the key and returned by every DescribeKey. */
#define KMS_DESCRIPTION_MAX 256

/* A key policy, in bytes of JSON: parsed on every policy read, so bounded. */
#define KMS_POLICY_MAX (32u << 10)

/* Tags per key, and each tag's key (1..128) and value (0..256) in bytes of
 * UTF-8: they travel in every DescribeKey answer. */
#define KMS_TAGS_MAX 50
#define KMS_TAG_KEY_MIN 1
#define KMS_TAG_KEY_MAX 128
#define KMS_TAG_VALUE_MAX 256

/* Items per list page (ListKeys, ListAliases); 0 asks for kmsd's default.
 * Bounds the work and the reply of one call. */
#define KMS_LIST_LIMIT_MAX 1000

/* Bytes of keys' metadata in one ListKeys page: past it the page ends early,
 * with a next_page_token, so that a page of keys with many tags stays well
 * inside KMS_REPLY_MAX (a key's metadata can be ~20 KB with 50 full tags). */
#define KMS_LIST_REPLY_BUDGET ((size_t)4 << 20)

/* A page token, in bytes: kmsd issues them, so a longer one is not kmsd's. */
#define KMS_PAGE_TOKEN_MAX 128

/* Automatic rotation period, in days (0: off): ten years, past which a
 * period is surely a mistake. */
#define KMS_ROTATION_DAYS_MAX 3650

/* The waiting period before a key scheduled for deletion is destroyed, in
 * days: long enough to notice a mistake, short enough to honour a request
 * to erase. */
#define KMS_DELETION_DAYS_MIN 7
#define KMS_DELETION_DAYS_MAX 30

#endif
