# kms_format: the pure, HSM-free formats of the data plane: key ids and
# aliases (keyid.h), the encryption context and its canonical encoding
# (context.h), the ciphertext blob (blob.h, docs/ciphertext-format.md).
#
# Included by kms/CMakeLists.txt. Paths are relative to this file, not to the
# including directory, so tests/format can include it as a fallback while
# kms/CMakeLists.txt does not yet.
include_guard(GLOBAL)

set(KMS_FORMAT_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/blob.c
  ${CMAKE_CURRENT_LIST_DIR}/context.c
  ${CMAKE_CURRENT_LIST_DIR}/keyid.c)
add_library(kms_format STATIC ${KMS_FORMAT_SOURCES})
target_include_directories(kms_format PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(kms_format PUBLIC kms_common PkgConfig::OPENSSL)
