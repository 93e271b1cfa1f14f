# pscope_warnings: the warning set every pscope target links PRIVATE.
add_library(pscope_warnings INTERFACE)
target_compile_options(pscope_warnings INTERFACE
  -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla)
