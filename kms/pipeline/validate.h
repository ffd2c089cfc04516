/*
 * validate.h: field checks shared by the operations' validators (ops.c).
 * Each returns KMS_INVALID_ARGUMENT with a message naming the field (never
 * repeating its bytes) or KMS_OK. Pure and thread-safe.
 */
#ifndef KMS_VALIDATE_H
#define KMS_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <kms/kms.pb-c.h>
#include <kms/limits.h>
#include <kms/status.h>

kms_status validate_key_ref(const char *field, const char *key_ref) KMS_MUST_USE;
kms_status validate_key_id(const char *field, const char *key_id) KMS_MUST_USE;
kms_status validate_alias(const char *field, const char *alias) KMS_MUST_USE;
kms_status validate_context(const char *field, size_t n,
                            Kms__StringPair *const *pairs) KMS_MUST_USE;
kms_status validate_plaintext(const char *field, ProtobufCBinaryData plaintext) KMS_MUST_USE;
kms_status validate_blob_size(const char *field, ProtobufCBinaryData blob) KMS_MUST_USE;
kms_status validate_utf8(const char *field, const char *s, size_t max) KMS_MUST_USE;
kms_status validate_tags(size_t n, Kms__StringPair *const *tags) KMS_MUST_USE;
kms_status validate_rotation_days(uint32_t days) KMS_MUST_USE;
kms_status validate_list(uint32_t limit, const char *page_token) KMS_MUST_USE;

#endif
