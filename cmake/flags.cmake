# Warnings are errors; hardening is on for every build type.
add_compile_definitions(_GNU_SOURCE)
add_compile_options(
  -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith -Wstrict-prototypes
  # -Wcast-qual is off: protobuf-c's generated INIT macros cast away const.
  -Wmissing-prototypes -Wvla -Wno-unused-parameter
  -fstack-protector-strong -fno-strict-aliasing)
add_link_options(-Wl,-z,relro,-z,now -Wl,-z,noexecstack)

if(KMS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -O1)
  add_link_options(-fsanitize=address,undefined)
elseif(KMS_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -O1)
  add_link_options(-fsanitize=thread)
else()
  # _FORTIFY_SOURCE needs optimisation, and conflicts with ASan.
  add_compile_options($<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
endif()
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
add_link_options(-pie)
