# psd's resident memory after connection churn (issue 19). RSS only means something with the C
# library's allocator, so this test runs psd_plain: psd built from the same sources without
# sanitizers (ASan's allocator quarantines freed memory and ignores malloc_trim).
get_target_property(PS_PLAIN_CORE psd_core SOURCES)
list(TRANSFORM PS_PLAIN_CORE PREPEND ${CMAKE_SOURCE_DIR}/server/)
get_target_property(PS_PLAIN_COMMON ps_common SOURCES)
list(TRANSFORM PS_PLAIN_COMMON PREPEND ${CMAKE_SOURCE_DIR}/common/)
add_executable(psd_plain ${CMAKE_SOURCE_DIR}/server/src/main.c ${PS_PLAIN_CORE} ${PS_PLAIN_COMMON}
                         ${CMAKE_BINARY_DIR}/proto/pscope.pb-c.c)
add_dependencies(psd_plain ps_proto)
target_compile_options(psd_plain PRIVATE -fno-sanitize=all)
target_link_options(psd_plain PRIVATE -fno-sanitize=all)
target_include_directories(psd_plain PRIVATE ${CMAKE_SOURCE_DIR}/server/src
                                             ${CMAKE_SOURCE_DIR}/common/include
                                             ${CMAKE_SOURCE_DIR}/common/src
                                             ${CMAKE_BINARY_DIR}/proto ${HTTP_PARSER_INCLUDE_DIR})
# What psd_core and pscommon link, minus themselves and the warning flags.
get_target_property(PS_PLAIN_LIBS psd_core LINK_LIBRARIES)
get_target_property(PS_PLAIN_COMMON_LIBS pscommon LINK_LIBRARIES)
list(APPEND PS_PLAIN_LIBS ${PS_PLAIN_COMMON_LIBS})
list(REMOVE_ITEM PS_PLAIN_LIBS pscommon pscope_warnings ps_common ps_proto)
target_link_libraries(psd_plain PRIVATE ${PS_PLAIN_LIBS})

ps_add_criterion_test(test_churn_rss SOURCES integration/test_churn_rss.c
                      LABELS integration TIMEOUT 300)
add_dependencies(test_churn_rss psd_plain)
set_property(TEST test_churn_rss APPEND PROPERTY ENVIRONMENT "PSD_PLAIN_BIN=$<TARGET_FILE:psd_plain>")
