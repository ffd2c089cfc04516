# Every dependency comes from a Debian 12 package (scripts/deps installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(nng CONFIG REQUIRED)
pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET libcrypto libssl)
pkg_check_modules(LIBP11 REQUIRED IMPORTED_TARGET libp11)
pkg_check_modules(P11KIT REQUIRED p11-kit-1)
pkg_check_modules(SQLITE REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(CJOSE REQUIRED IMPORTED_TARGET cjose)
pkg_check_modules(INIH REQUIRED IMPORTED_TARGET inih)
# The test suite's own: cmocka, and nanomsg (a foreign NNG-compatible peer).
if(KMS_BUILD_TESTS)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
  pkg_check_modules(NANOMSG REQUIRED IMPORTED_TARGET nanomsg)
endif()
# libpq: the store's PostgreSQL driver (kms/store/db_pg.c; docs/scale-out.md).
pkg_check_modules(LIBPQ IMPORTED_TARGET libpq)
if(NOT LIBPQ_FOUND)
  message(FATAL_ERROR "libpq (PostgreSQL's client library) was not found by pkg-config: "
                      "install Debian's libpq-dev (scripts/deps installs it)")
endif()
# kmsd tells systemd its state (sd_notify: kms/kmsd_notify.c).
pkg_check_modules(LIBSYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
find_program(PROTOC_C protoc-c REQUIRED)

# The PKCS#11 header: p11-kit ships the OASIS v2.40 definitions.
add_library(pkcs11_headers INTERFACE)
target_include_directories(pkcs11_headers INTERFACE ${P11KIT_INCLUDE_DIRS})

set(KMS_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so" CACHE FILEPATH
    "PKCS#11 module used by default and by the tests")
