# What `cmake --install` puts where (docs/install.md), under the GNU
# directories (GNUInstallDirs: bin, sbin, lib or lib/<multiarch>, include).
#
#   sbin/kmsd                            the daemon
#   bin/kms, bin/kms-admin, bin/kms-bench the clients
#   lib/libkmsclient.so.0.1.0 (+ .so.0, .so) and lib/libkmsclient.a
#   include/kms/*.h                      the public headers, and kms.pb-c.h,
#                                        protoc-c's header, which
#                                        client_raw.h and client_async.h use
#   lib/pkgconfig/kmsclient.pc           pkg-config --cflags --libs kmsclient
#   lib/cmake/kms/                       find_package(kms): kms::kmsclient,
#                                        kms::kmsclient_static
#   share/man/man{1,5,8}/                kms(1), kms-admin(1), kmsd.ini(5),
#                                        kmsd(8), made by scripts/make-man
#   share/bash-completion/completions/   kms, kms-admin, kmsd: bash
#                                        completion, by scripts/make-completion
#   lib/python3/dist-packages/kms/       the Python package (KMS_INSTALL_PYTHONDIR)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS kmsd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS kms kms-admin kms-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The static archive exports as kms::kmsclient_static, file libkmsclient.a.
set_target_properties(kmsclient_archive PROPERTIES EXPORT_NAME kmsclient_static)
install(TARGETS kmsclient kmsclient_archive EXPORT kmsTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kms
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES $<TARGET_PROPERTY:kms_proto,BINARY_DIR>/kms/kms.pb-c.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kms)

# kmsclient.pc finds its prefix from its own place (${pcfiledir}), so a tree
# installed with `cmake --install --prefix DIR` works where it lands.
set(KMS_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(FATAL_ERROR "kmsclient.pc: CMAKE_INSTALL_LIBDIR and CMAKE_INSTALL_INCLUDEDIR must be relative")
endif()
file(RELATIVE_PATH KMS_PC_TO_PREFIX /prefix/${KMS_PC_DIR} /prefix)
string(REGEX REPLACE "/$" "" KMS_PC_TO_PREFIX "${KMS_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/kmsclient.pc.in
               ${PROJECT_BINARY_DIR}/kmsclient.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kmsclient.pc DESTINATION ${KMS_PC_DIR})

set(KMS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kms)
install(EXPORT kmsTargets NAMESPACE kms:: DESTINATION ${KMS_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kmsConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/kmsConfig.cmake
                              INSTALL_DESTINATION ${KMS_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kmsConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kmsConfig.cmake ${PROJECT_BINARY_DIR}/kmsConfigVersion.cmake
        DESTINATION ${KMS_CMAKE_DIR})

# The manual pages, made at build time from the programs' own --help text
# and docs/config.md (scripts/make-man), so they cannot say other than the
# programs. Leak checks off: a sanitizer build's --help is not under test.
set(KMS_MAN_DIR ${PROJECT_BINARY_DIR}/man)
set(KMS_MAN_PAGES ${KMS_MAN_DIR}/kms.1 ${KMS_MAN_DIR}/kms-admin.1 ${KMS_MAN_DIR}/kmsd.ini.5
    ${KMS_MAN_DIR}/kmsd.8)
add_custom_command(
  OUTPUT ${KMS_MAN_PAGES}
  COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
          /usr/bin/python3 ${PROJECT_SOURCE_DIR}/scripts/make-man ${KMS_MAN_DIR}
          ${PROJECT_VERSION} $<TARGET_FILE:kmsd> $<TARGET_FILE:kms> $<TARGET_FILE:kms-admin>
          ${PROJECT_SOURCE_DIR}/docs/config.md
  DEPENDS ${PROJECT_SOURCE_DIR}/scripts/make-man ${PROJECT_SOURCE_DIR}/scripts/kms_help.py
          ${PROJECT_SOURCE_DIR}/docs/config.md
          kmsd kms kms-admin
  COMMENT "make-man: kms(1), kms-admin(1), kmsd.ini(5), kmsd(8)")
add_custom_target(man ALL DEPENDS ${KMS_MAN_PAGES})
install(FILES ${KMS_MAN_DIR}/kms.1 ${KMS_MAN_DIR}/kms-admin.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${KMS_MAN_DIR}/kmsd.ini.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${KMS_MAN_DIR}/kmsd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# Bash completion, made at build time from the same --help walk
# (scripts/make-completion, scripts/kms_help.py): every command and flag the
# programs have, nothing else (test: bash_completion).
set(KMS_COMPLETION_DIR ${PROJECT_BINARY_DIR}/bash-completion)
set(KMS_COMPLETIONS ${KMS_COMPLETION_DIR}/kms ${KMS_COMPLETION_DIR}/kms-admin
    ${KMS_COMPLETION_DIR}/kmsd)
add_custom_command(
  OUTPUT ${KMS_COMPLETIONS}
  COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
          /usr/bin/python3 ${PROJECT_SOURCE_DIR}/scripts/make-completion ${KMS_COMPLETION_DIR}
          $<TARGET_FILE:kmsd> $<TARGET_FILE:kms> $<TARGET_FILE:kms-admin>
  DEPENDS ${PROJECT_SOURCE_DIR}/scripts/make-completion ${PROJECT_SOURCE_DIR}/scripts/kms_help.py
          kmsd kms kms-admin
  COMMENT "make-completion: bash completion of kms, kms-admin, kmsd")
add_custom_target(completion ALL DEPENDS ${KMS_COMPLETIONS})
install(FILES ${KMS_COMPLETIONS} DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# The Python package kms (docs/python.md): lib/python3/dist-packages, where
# Debian's python3 looks under /usr (another prefix: PYTHONPATH).
set(KMS_INSTALL_PYTHONDIR lib/python3/dist-packages CACHE STRING
    "Where the Python package kms is installed, under the prefix")
install(DIRECTORY ${PROJECT_SOURCE_DIR}/clients/python/kms
        DESTINATION ${KMS_INSTALL_PYTHONDIR}
        FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
