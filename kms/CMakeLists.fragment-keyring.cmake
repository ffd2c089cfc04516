# kms_keyring: the key metadata store (SQLite, store.h) and the key
# lifecycle (keyring.h): everything between a request handler and the HSM +
# kms.db, with start-up reconciliation.
#
# Included by kms/CMakeLists.txt. Paths are relative to this file, so
# tests/keyring can include it as a fallback.
include_guard(GLOBAL)

if(NOT TARGET kms_format)
  include(${CMAKE_CURRENT_LIST_DIR}/CMakeLists.fragment-format.cmake)
endif()

add_library(kms_keyring STATIC
  ${CMAKE_CURRENT_LIST_DIR}/store.c
  ${CMAKE_CURRENT_LIST_DIR}/store_keys.c
  ${CMAKE_CURRENT_LIST_DIR}/store_aliases.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring_cache.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring_versions.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring_keys.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring_aliases.c
  ${CMAKE_CURRENT_LIST_DIR}/keyring_reconcile.c)
target_include_directories(kms_keyring PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(kms_keyring
  PUBLIC kms_format kms_hsm kms_common
  PRIVATE PkgConfig::SQLITE PkgConfig::JANSSON PkgConfig::OPENSSL Threads::Threads)
